#!/usr/bin/env python3
"""Checks cross-built wheels of the Python binding (issue 6).

  check_wheels.py DIST_DIR [--strip-sizes SIZES.json]

For each expected platform, exactly one wheel `edgemodule-*-cp39-abi3-<platform>.whl` in
DIST_DIR whose WHEEL metadata has the same tag, `Root-Is-Purelib: false`, and whose native
extension (edgemodule/_native.abi3.so or edgemodule/_native.pyd) is an ELF / PE file of the
right machine: ELF e_machine 0xB7 (aarch64, 64-bit LE), 0x28 (ARM, 32-bit LE, hard-float
EABI5); PE machine 0x8664 (x86-64). Prints one line per wheel and "N passed, N failed";
exits 1 on any failure. With --strip-sizes, writes {platform: extension size in bytes}.
"""

import argparse
import glob
import json
import os
import struct
import sys
import zipfile

# platform tag -> (extension path in the wheel, format, machine, ELF class (1=32, 2=64))
EXPECTED = {
    "manylinux2014_aarch64": ("edgemodule/_native.abi3.so", "ELF", 0xB7, 2),
    "manylinux2014_armv7l": ("edgemodule/_native.abi3.so", "ELF", 0x28, 1),
    "win_amd64": ("edgemodule/_native.pyd", "PE", 0x8664, None),
}


def elf_machine(data):
    if data[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    ei_class, ei_data = data[4], data[5]
    if ei_data != 1:
        raise ValueError("not little-endian")
    (e_type, e_machine) = struct.unpack_from("<HH", data, 16)
    if e_type != 3:
        raise ValueError(f"ELF type {e_type}, not a shared object (3)")
    flags = None
    if ei_class == 1:
        (flags,) = struct.unpack_from("<I", data, 36)
    elif ei_class == 2:
        (flags,) = struct.unpack_from("<I", data, 48)
    return ei_class, e_machine, flags


def pe_machine(data):
    if data[:2] != b"MZ":
        raise ValueError("no MZ header")
    (pe_off,) = struct.unpack_from("<I", data, 0x3C)
    if data[pe_off:pe_off + 4] != b"PE\0\0":
        raise ValueError("no PE signature")
    (machine,) = struct.unpack_from("<H", data, pe_off + 4)
    (characteristics,) = struct.unpack_from("<H", data, pe_off + 22)
    if not characteristics & 0x2000:
        raise ValueError("PE file is not a DLL")
    return machine


def check(path, platform):
    ext_path, fmt, machine, elf_class = EXPECTED[platform]
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        wheel_meta = [n for n in names if n.endswith(".dist-info/WHEEL")]
        if len(wheel_meta) != 1:
            raise ValueError("no single .dist-info/WHEEL")
        meta = z.read(wheel_meta[0]).decode()
        tags = [ln.split(":", 1)[1].strip() for ln in meta.splitlines() if ln.startswith("Tag:")]
        if not any(t.startswith("cp39-abi3-") and platform in t.split("-")[2].split(".")
                   for t in tags):
            raise ValueError(f"WHEEL tags {tags} lack cp39-abi3-{platform}")
        if "Root-Is-Purelib: false" not in meta:
            raise ValueError("Root-Is-Purelib is not false")
        if ext_path not in names:
            natives = [n for n in names if "_native" in n]
            raise ValueError(f"{ext_path} missing (found {natives})")
        data = z.read(ext_path)
    if fmt == "ELF":
        cls, m, flags = elf_machine(data)
        if (cls, m) != (elf_class, machine):
            raise ValueError(f"ELF class {cls} machine {m:#x}, want {elf_class} {machine:#x}")
        if machine == 0x28 and not flags & 0x400:  # EF_ARM_ABI_FLOAT_HARD
            raise ValueError(f"ARM ELF flags {flags:#x}: not hard-float")
        what = f"ELF{32 if cls == 1 else 64} machine {m:#x}"
    else:
        m = pe_machine(data)
        if m != machine:
            raise ValueError(f"PE machine {m:#x}, want {machine:#x}")
        what = f"PE32+ DLL machine {m:#x}"
    return what, len(data)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dist")
    p.add_argument("--strip-sizes")
    p.add_argument("--platforms", default=",".join(EXPECTED))
    a = p.parse_args()
    passed = failed = 0
    sizes = {}
    for platform in a.platforms.split(","):
        found = [w for w in glob.glob(os.path.join(a.dist, "edgemodule-*-cp39-abi3-*.whl"))
                 if platform in os.path.basename(w)[:-4].split("-")[-1].split(".")]
        try:
            if len(found) != 1:
                raise ValueError(f"{len(found)} wheels for {platform} in {a.dist}")
            what, size = check(found[0], platform)
            sizes[platform] = size
            print(f"ok    {os.path.basename(found[0])}: {what}, extension {size} bytes")
            passed += 1
        except (ValueError, zipfile.BadZipFile, struct.error) as e:
            print(f"FAIL  {platform}: {e}")
            failed += 1
    if a.strip_sizes:
        with open(a.strip_sizes, "w") as f:
            json.dump(sizes, f, indent=1)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
