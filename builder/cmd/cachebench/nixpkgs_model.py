"""The method of nixpkgs' mkBinaryCache builder (make-binary-cache.py), for
measuring against it side by side.

For each path of the structured-attrs closure, in a pool of NIX_BUILD_CORES
processes: `nix-store --dump PATH | COMPRESSOR` into nar/, `nix-hash --type
sha256 --base32 --flat` of that file, a rename to the file hash, and the
narinfo. It reads what nixpkgs' builder reads: $out, $NIX_STORE,
$NIX_BUILD_CORES and $NIX_ATTRS_JSON_FILE.

usage: NIX_ATTRS_JSON_FILE=F out=DIR python3 nixpkgs_model.py --compression none|xz|zstd
"""

import argparse
import json
import multiprocessing
import os
import subprocess
from pathlib import Path

# The compressor each method pipes the NAR through, and the file extension.
PIPES = {"none": ("", ""), "xz": ("| xz -c", ".xz"), "zstd": ("| zstd", ".zst")}


def store_name(path, store):
    return path[len(store) + 1 :]


def write_path(item, store, out, method):
    pipe, ext = PIPES[method]
    hash_part = store_name(item["path"], store).split("-")[0]
    tmp = out / "nar" / f"{hash_part}.nar{ext}"
    with open(tmp, "wb") as f:
        subprocess.run(f"nix-store --dump {item['path']} {pipe}", stdout=f, shell=True, check=True)
    file_hash = subprocess.run(
        ["nix-hash", "--base32", "--type", "sha256", "--flat", tmp],
        capture_output=True,
        check=True,
    ).stdout.decode().strip()
    size = os.path.getsize(tmp)
    url = Path("nar") / f"{file_hash}.nar{ext}"
    os.rename(tmp, out / url)
    refs = " ".join(store_name(r, store) for r in item["references"])
    with open(out / f"{hash_part}.narinfo", "w") as f:
        f.write(
            f"StorePath: {item['path']}\n"
            f"URL: {url}\n"
            f"Compression: {method}\n"
            f"FileHash: sha256:{file_hash}\n"
            f"FileSize: {size}\n"
            f"NarHash: {item['narHash']}\n"
            f"NarSize: {item['narSize']}\n"
            f"References: {refs}\n"
        )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--compression", choices=sorted(PIPES), default="zstd")
    args = parser.parse_args()
    out = Path(os.environ["out"])
    store = os.environ.get("NIX_STORE", "/nix/store")
    jobs = int(os.environ.get("NIX_BUILD_CORES", "4")) or os.cpu_count()
    with open(os.environ["NIX_ATTRS_JSON_FILE"]) as f:
        closure = json.load(f)["closure"]
    (out / "nar").mkdir(parents=True, exist_ok=True)
    (out / "nix-cache-info").write_text(f"StoreDir: {store}\n")
    # Fork, as Python up to 3.13 (nixpkgs' python3) does by default: 3.14's
    # forkserver would also hide the workers' CPU time from the parent.
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(processes=jobs) as pool:
        pool.starmap(write_path, [(item, store, out, args.compression) for item in closure])


if __name__ == "__main__":
    main()
