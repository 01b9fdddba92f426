"""Write ``.dvc/offline_plots.html``: the page ``dvc plots show`` fills, with Vega inlined so it works offline.

DVC's own page loads vega, vega-lite and vega-embed from a CDN (jsdelivr): without internet the plots are
blank. This template carries the three libraries inline instead (the same major versions DVC asks for, the
last releases that ship browser builds of those majors), and leaves out DVC's ``{scripts}`` slot, so the
page DVC writes has no script from the network. ``.dvc/config`` points ``plots.html_template`` at it.

The file is committed: set-up needs no npm. To regenerate it (new versions: update PACKAGES), on a machine
that can reach the npm registry::

    python tools/offline_plots_template.py            # downloads the three tarballs, checks their integrity
    python tools/offline_plots_template.py --from DIR # or from tarballs already in DIR
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / ".dvc" / "offline_plots.html"

# (package, version, file inside the tarball, npm "integrity" of the tarball)
PACKAGES = [
    ("vega", "5.33.1", "package/build/vega.min.js",
     "sha512-1fArfVDUqVbb5z8n+/nVQb+VNBzx8svY6CrsyTK4Ujm4yrd9I1auoKxBAPXLCavY1LcrbHUskQbGUP8gXOzyQw=="),
    ("vega-lite", "5.23.0", "package/build/vega-lite.min.js",
     "sha512-l4J6+AWE3DIjvovEoHl2LdtCUkfm4zs8Xxx7INwZEAv+XVb6kR6vIN1gt3t2gN2gs/y4DYTs/RPoTeYAuEg6mA=="),
    ("vega-embed", "6.29.0", "package/build/vega-embed.min.js",
     "sha512-PmlshTLtLFLgWtF/b23T1OwX53AugJ9RZ3qPE2c01VFAbgt3/GSNI/etzA/GzdrkceXFma+FDHNXUppKuM0U6Q=="),
]
REGISTRY = "https://registry.npmjs.org"

LICENSE = """\
vega, vega-lite and vega-embed: Copyright (c) 2015, University of Washington Interactive Data Lab.
All rights reserved. BSD-3-Clause:

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this
   list of conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice,
   this list of conditions and the following disclaimer in the documentation
   and/or other materials provided with the distribution.

3. Neither the name of the copyright holder nor the names of its contributors
  may be used to endorse or promote products derived from this software
  without specific prior written permission.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT OWNER OR CONTRIBUTORS BE LIABLE
FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR
SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY,
OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.

The vega-embed build also bundles fast-json-patch and json-stringify-pretty-compact (MIT), semver (ISC)
and tslib (0BSD)."""

# The charset comes first: browsers look for it in the first 1024 bytes only, and the licence comment is
# longer; declared after it, the page was read as windows-1252 and Vega's "…" showed as "â€¦".
PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
<!--
A `dvc plots show` page that works offline: {versions} inlined below (no script from the network).
Written by tools/offline_plots_template.py from the npm tarballs; do not edit by hand.
{sums}

{license}
-->
    {{refresh_tag}}
    <title>DVC Plot</title>
{scripts}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def tarball(name: str, version: str, integrity: str, source: Path | None) -> bytes:
    fname = f"{name}-{version}.tgz"
    if source is not None:
        data = (source / fname).read_bytes()
    else:
        with urllib.request.urlopen(f"{REGISTRY}/{name}/-/{fname}", timeout=60) as r:
            data = r.read()
    algo, digest = integrity.split("-", 1)
    if base64.b64encode(hashlib.new(algo, data).digest()).decode() != digest:
        raise SystemExit(f"{fname}: integrity check failed (expected {integrity})")
    return data


def build(source: Path | None = None) -> str:
    scripts, sums = [], []
    for name, version, member, integrity in PACKAGES:
        with tarfile.open(fileobj=io.BytesIO(tarball(name, version, integrity, source)), mode="r:gz") as tar:
            js = tar.extractfile(member).read().decode("utf-8")
        if "</script" in js.lower():
            raise SystemExit(f"{name}: the build contains '</script', it cannot be inlined")
        sums.append(f"{name}@{version} {member.removeprefix('package/')} sha256 {hashlib.sha256(js.encode()).hexdigest()}")
        scripts.append(f"    <script>/* {name}@{version} */\n{js}\n    </script>")
    versions = ", ".join(f"{n}@{v}" for n, v, _, _ in PACKAGES)
    return PAGE.format(versions=versions, sums="\n".join(sums), license=LICENSE, scripts="\n".join(scripts))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--from", dest="source", type=Path, default=None, help="folder with the .tgz files")
    ap.add_argument("--out", type=Path, default=TEMPLATE)
    args = ap.parse_args(argv)
    page = build(args.source)
    args.out.write_text(page, encoding="utf-8")
    print(f"wrote {args.out} ({len(page) // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
