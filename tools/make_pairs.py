#!/usr/bin/env python3
"""Write a PAIRS.csv for `btnet-edge eval-pairs` from a folder of identity subfolders.

Every same and different pair among the images, in a seeded shuffled order (so that
the contiguous folds of the 10-fold accuracy mix both kinds), paths relative to the CSV:

    python tools/make_pairs.py ../shared/fixtures/images/people runs/people/PAIRS.csv
"""

import argparse
import sys

from btnet_edge.evaluation.pairs import all_pairs, write_pairs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder with one subfolder of images per identity")
    parser.add_argument("out", help="PAIRS.csv to write")
    parser.add_argument("--seed", type=int, default=0, help="order of the pairs (default 0)")
    args = parser.parse_args(argv)
    pairs = all_pairs(args.root, seed=args.seed)
    write_pairs(pairs, args.out)
    print(f"{args.out}: {len(pairs)} pairs, {sum(p.same for p in pairs)} same")
    return 0


if __name__ == "__main__":
    sys.exit(main())
