#!/usr/bin/env python3
"""The Hugging Face `tokenizers` anchor for `colocate bench tokenize`: single-thread encode speed on the
same documents, with the same checksum of the ids (so equal checksums mean identical token ids).

    colocate bench tokenize --write-text /tmp/mixed.txt
    python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install tokenizers
    /tmp/tokvenv/bin/python bench/anchor_tokenizers.py --text /tmp/mixed.txt \
        ../shared/fixtures/tokenizers/qwen2-style ../shared/fixtures/tokenizers/llama3-style \
        ../shared/fixtures/tokenizers/sp-style ../shared/fixtures/tokenizer
"""
import argparse
import os
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import tokenizers  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", required=True, help="documents separated by U+001E (bench tokenize --write-text)")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--no-special-tokens", action="store_true")
    parser.add_argument("tokenizers", nargs="+", help="tokenizer.json files or directories holding one")
    args = parser.parse_args()

    with open(args.text, encoding="utf-8") as f:
        documents = f.read().split("\x1e")
    size = sum(len(d.encode("utf-8")) for d in documents)
    print(f"anchor: Hugging Face tokenizers {tokenizers.__version__}, {len(documents)} documents, "
          f"{size / 1e6:.2f} MB, single thread, best of {args.passes} passes")
    for path in args.tokenizers:
        file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
        tok = tokenizers.Tokenizer.from_file(file)
        name = os.path.basename(os.path.dirname(file) if file.endswith("tokenizer.json") else file)
        special = not args.no_special_tokens
        # `encode` per document (what a caller does), and `encode_batch` (one call; Rust-side loop,
        # single-threaded by RAYON_NUM_THREADS=1), which leaves out most of the Python overhead.
        modes = [("encode", lambda: [tok.encode(d, add_special_tokens=special) for d in documents]),
                 ("encode_batch", lambda: tok.encode_batch(documents, add_special_tokens=special))]
        for mode, run in modes:
            best, best_cpu, count, checksum = float("inf"), float("inf"), 0, 0
            for _ in range(args.passes):
                start, start_cpu = time.perf_counter(), time.process_time()
                encodings = run()
                best = min(best, time.perf_counter() - start)
                best_cpu = min(best_cpu, time.process_time() - start_cpu)
                h, n = 0xCBF29CE484222325, 0
                for e in encodings:
                    for i in e.ids:
                        h = ((h ^ i) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
                    n += len(e.ids)
                count, checksum = n, h
            print(f"  {name:<16} {count / best:10.0f} tokens/s  {size / best / 1e6:6.2f} MB/s  {count:9d} tokens  "
                  f"{best:.3f} s  (CPU time: {count / best_cpu:10.0f} tokens/s)  ids fnv1a {checksum:x}  ({mode})")


if __name__ == "__main__":
    main()
