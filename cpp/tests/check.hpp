// A minimal test harness for ctest: CHECK records a failure and goes on; main returns non-zero on any.
#pragma once

#include <cmath>
#include <functional>
#include <iostream>
#include <string>

namespace btnet_test {

inline int& failures() {
  static int count = 0;
  return count;
}

inline void fail(const char* file, int line, const std::string& what) {
  std::cerr << file << ":" << line << ": FAILED " << what << "\n";
  ++failures();
}

// Runs body and expects it to throw Error whose message contains needle.
template <typename Error>
void expect_error(const char* file, int line, const std::function<void()>& body, const std::string& needle) {
  try {
    body();
  } catch (const Error& exc) {
    if (std::string(exc.what()).find(needle) == std::string::npos)
      fail(file, line, "message '" + std::string(exc.what()) + "' lacks '" + needle + "'");
    return;
  } catch (const std::exception& exc) {
    fail(file, line, "wrong exception type: " + std::string(exc.what()));
    return;
  }
  fail(file, line, "no exception; expected one mentioning '" + needle + "'");
}

}  // namespace btnet_test

#define CHECK(cond) \
  ((cond) ? (void)0 : btnet_test::fail(__FILE__, __LINE__, #cond))
#define CHECK_NEAR(a, b, tol) \
  ((std::abs((a) - (b)) <= (tol)) ? (void)0 : btnet_test::fail(__FILE__, __LINE__, #a " ~ " #b ": " + std::to_string(a) + " vs " + std::to_string(b)))
#define EXPECT_ERROR(Error, body, needle) btnet_test::expect_error<Error>(__FILE__, __LINE__, [&] { body; }, needle)
#define TEST_MAIN_RETURN (btnet_test::failures() ? (std::cerr << btnet_test::failures() << " failure(s)\n", 1) : 0)
