"""``edgekd`` as a torchrun worker that must not write into a folder unless it is rank 0.

    torchrun --standalone --nproc-per-node 2 tests/rank_guard.py FOLDER distill ...

On ranks other than 0, every write-like operation under FOLDER (seen through Python's
audit events: opening for writing, mkdir, rename/replace, remove, rmtree, chmod) is
recorded; if there was any, the worker lists them on stderr and exits 3.
"""
import os
import sys

WRITE_EVENTS = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.chmod", "os.truncate",
                "os.symlink", "os.link", "shutil.rmtree", "shutil.copyfile", "shutil.move"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def main() -> None:
    guarded = os.path.realpath(sys.argv[1]) + os.sep
    touched: list[str] = []

    def inside(path) -> bool:
        try:
            return os.path.realpath(os.fsdecode(path)).startswith(guarded)
        except TypeError:          # a file descriptor, not a path
            return False

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writes = bool(mode and set(mode) & set("wax+")) or bool((flags or 0) & WRITE_FLAGS)
        else:
            path, writes = (args[0] if args else None), event in WRITE_EVENTS
        if writes and inside(path):
            touched.append(f"{event} {path}")

    if os.environ.get("RANK", "0") != "0":
        sys.addaudithook(hook)
    sys.argv = ["edgekd", *sys.argv[2:]]
    from edgekd.app.cli import main as edgekd_main
    try:
        edgekd_main()
    finally:
        if touched:
            print(f"rank {os.environ['RANK']} wrote under {guarded}:", *touched[:10], sep="\n  ", file=sys.stderr)
            os._exit(3)


if __name__ == "__main__":
    main()
