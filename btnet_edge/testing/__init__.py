"""Test tools shipped with the SDK: stand-ins for libraries that cannot be installed where tests run."""
