#!/usr/bin/env python3
"""Prints the product files over 600 lines and the functions over 80 lines (C++ under common/,
coordinator/, client/, agent/, cli/, worker/, api/; tests, bench, fuzz and examples excluded), the
limits the code base keeps to so that a file and a function can be read in one sitting.

  scripts/code-size-report.py [--root DIR] [--strict]

A function is measured from the line of its opening brace to its closing brace, found by a
brace-matching scan that skips comments, string and character literals; tables (brace-initialised
data) are not functions and are not reported. --strict exits 1 when anything is over; without it
the report is informational (exit 0) and scripts/test.sh prints it after the suite."""
import argparse
import os
import re
import sys

FOLDERS = ["common", "coordinator", "client", "agent", "cli", "worker", "api"]
FILE_LIMIT = 600
FUNCTION_LIMIT = 80
# The text before a function body's brace ends with ")" plus qualifiers, or is a constructor's
# initialiser list; a lambda's "](...)" also qualifies and is measured as part of its function.
SIGNATURE = re.compile(r"\)\s*(const)?\s*(noexcept)?\s*(override)?\s*(final)?\s*(->\s*[\w:<>,\s*&]+)?$")
CONTROL = re.compile(r"\b(if|for|while|switch|catch|do|else)\s*(\(.*)?$")


def strip(text):
    """The text with comments and literals blanked (newlines kept, so line numbers stay)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text.startswith('R"', i):
            m = re.match(r'R"([^(]*)\(', text[i:])
            end = text.find(")" + (m.group(1) if m else "") + '"', i)
            j = n if end < 0 else end + len(m.group(1) if m else "") + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + " " * (j - i - 1) + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(path):
    """(name, first line, length) of each top-level function body in the file."""
    text = strip(open(path, encoding="utf-8", errors="replace").read())
    found, depth, i = [], 0, 0
    stack = []  # (is_function, start line, name) per open brace
    for i, c in enumerate(text):
        if c == "{":
            head = text[max(0, text.rfind(";", 0, i), text.rfind("}", 0, i),
                            text.rfind("{", 0, i)) + 1:i].strip()
            is_fn = bool(SIGNATURE.search(head)) and not CONTROL.search(head.split("\n")[-1]) and \
                not any(s[0] for s in stack)
            name = ""
            if is_fn:
                m = re.search(r"([~\w:]+)\s*\([^()]*(\([^()]*\)[^()]*)*\)[^()]*$", head)
                name = m.group(1) if m else head.split("(")[0].split()[-1:]
            stack.append((is_fn, text.count("\n", 0, i) + 1, name))
        elif c == "}" and stack:
            is_fn, start, name = stack.pop()
            if is_fn:
                found.append((name, start, text.count("\n", 0, i) + 1 - start + 1))
    return found


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p.add_argument("--strict", action="store_true")
    a = p.parse_args()
    long_files, long_functions = [], []
    for folder in FOLDERS:
        for dirpath, _, names in os.walk(os.path.join(a.root, folder)):
            for name in sorted(names):
                if not name.endswith((".cc", ".h")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, a.root)
                lines = sum(1 for _ in open(path, encoding="utf-8", errors="replace"))
                if lines > FILE_LIMIT:
                    long_files.append((lines, rel))
                for fn, start, length in functions(path):
                    if length > FUNCTION_LIMIT:
                        long_functions.append((length, f"{rel}:{start}", fn))
    print(f"code size: {len(long_files)} product file(s) over {FILE_LIMIT} lines, "
          f"{len(long_functions)} function(s) over {FUNCTION_LIMIT} lines")
    for lines, rel in sorted(long_files, reverse=True):
        print(f"  file     {lines:5d} lines  {rel}")
    for length, where, fn in sorted(long_functions, reverse=True):
        print(f"  function {length:5d} lines  {where} {fn}")
    if a.strict and (long_files or long_functions):
        sys.exit(1)


if __name__ == "__main__":
    main()
