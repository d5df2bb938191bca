"""`bench kmod build|load|unload|status`: the kernel module behind the kmod:* backends."""
from __future__ import annotations

import sys

from bench.cli import common


def register(sub) -> None:
    k = sub.add_parser("kmod", help="the kernel module: build, load, unload, status (kmod:* backends)")
    k.add_argument("action", choices=["build", "load", "unload", "status"])
    k.add_argument("--kdir", help="kernel build tree (default: /lib/modules/$(uname -r)/build)")
    k.add_argument("--ko", help="module file to load (default: the one `build` made)")
    k.add_argument("--json", action="store_true", help="status as one JSON document")
    k.set_defaults(func=cmd_kmod)


def cmd_kmod(args) -> int:
    from bench.native import kmod
    try:
        if args.action == "build":
            print(f"built {kmod.build(args.kdir)}")
        elif args.action == "load":
            kmod.load(args.ko)
            print(f"loaded: {kmod.DEVICE} {'present' if kmod.device_present() else 'ABSENT'}")
        elif args.action == "unload":
            kmod.unload()
            print("unloaded")
        if args.action == "status" or args.json:
            if args.json:
                common.emit_json(kmod.status_doc())
            else:
                print("\n".join(kmod.status_lines()))
    except kmod.KmodError as exc:
        print(f"bench: kmod {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0
