"""Compiles the project's gettext catalogs (locale/*/LC_MESSAGES/*.po → .mo) in pure Python,
so a machine without GNU gettext's msgfmt can rebuild them (`manage.py compilemessages` needs
msgfmt). The .mo files are committed: `make run` and `make test` need no compile step.

    .venv/bin/python scripts/compile_messages.py           # rewrite every .mo
    .venv/bin/python scripts/compile_messages.py --check   # exit 1 when a .mo is stale

Handles what our catalogs use: msgctxt-less singular entries, `#, fuzzy` (skipped), escapes.
"""

from __future__ import annotations

import argparse
import ast
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_po(text: str) -> dict[str, str]:
    """msgid → msgstr of the translated, non-fuzzy entries (and the header, entry "")."""
    messages: dict[str, str] = {}
    entries: list[tuple[bool, list[str], list[str]]] = []  # (fuzzy, msgid parts, msgstr parts)
    fuzzy_next = False
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#,"):
            fuzzy_next = "fuzzy" in line
        elif not line or line.startswith("#"):
            continue
        elif line.startswith("msgid "):
            entries.append((fuzzy_next, [ast.literal_eval(line[6:])], []))
            fuzzy_next = False
            current = entries[-1][1]
        elif line.startswith("msgstr ") and entries:
            entries[-1][2].append(ast.literal_eval(line[7:]))
            current = entries[-1][2]
        elif line.startswith('"') and current is not None:
            current.append(ast.literal_eval(line))
        else:
            raise ValueError(f"unsupported .po line: {raw!r}")
    for fuzzy, msgid, msgstr in entries:
        key, value = "".join(msgid), "".join(msgstr)
        if value and (not fuzzy or key == ""):
            messages[key] = value
    return messages


def mo_bytes(messages: dict[str, str]) -> bytes:
    """The GNU .mo format (as CPython's Tools/i18n/msgfmt.py writes it)."""
    keys = sorted(messages)
    ids = b"".join(k.encode() + b"\0" for k in keys)
    strs = b"".join(messages[k].encode() + b"\0" for k in keys)
    offsets: list[tuple[int, int, int, int]] = []
    id_pos = str_pos = 0
    for k in keys:
        kb, vb = k.encode(), messages[k].encode()
        offsets.append((len(kb), id_pos, len(vb), str_pos))
        id_pos += len(kb) + 1
        str_pos += len(vb) + 1
    n = len(keys)
    keystart = 7 * 4 + 16 * n
    valuestart = keystart + len(ids)
    koffsets: list[int] = []
    voffsets: list[int] = []
    for klen, kpos, vlen, vpos in offsets:
        koffsets += [klen, kpos + keystart]
        voffsets += [vlen, vpos + valuestart]
    header = struct.pack("Iiiiiii", 0x950412DE, 0, n, 7 * 4, 7 * 4 + n * 8, 0, 0)
    return header + struct.pack(f"{len(koffsets)}i", *koffsets) + \
        struct.pack(f"{len(voffsets)}i", *voffsets) + ids + strs


def catalogs() -> list[Path]:
    return sorted((ROOT / "locale").glob("*/LC_MESSAGES/*.po"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when a .mo is missing or stale")
    args = parser.parse_args(argv)
    stale = []
    for po in catalogs():
        mo = po.with_suffix(".mo")
        data = mo_bytes(parse_po(po.read_text(encoding="utf-8")))
        if args.check:
            if not mo.exists() or mo.read_bytes() != data:
                stale.append(mo)
        else:
            mo.write_bytes(data)
            print(f"compiled {mo.relative_to(ROOT)}")
    for mo in stale:
        print(f"stale: {mo.relative_to(ROOT)} (run scripts/compile_messages.py)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
