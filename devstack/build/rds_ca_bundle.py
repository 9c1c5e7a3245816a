"""Where the RDS CA bundle shipped with the functions comes from, derived again and
compared: ``python -m devstack.build.rds_ca_bundle`` (needs npm and the npm registry).

The bundle is AWS's global bundle (``GLOBAL_BUNDLE_URL``) as AWS published it in May
2024. AWS's trust store is out of this project's reach, so it comes from a package AWS
publishes on npm that ships that bundle verbatim, followed by five roots of its own for
RDS Proxy (Amazon Root CA 1 to 4, Starfield Services Root G2), which the functions do
not trust: the first ``GLOBAL_BUNDLE_CERTIFICATES`` certificates of ``MEMBER``. The
package is pinned by version and by the integrity the registry records for its tarball;
the result must have the SHA-256 recorded in ``infra/bundling.py``, which projects that
downloaded the URL then pinned too (docs/database-tls.md).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from escalator.config import RDS_CA_BUNDLE
from infra.bundling import RDS_CA_BUNDLE_SHA256

GLOBAL_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
PACKAGE = "@aws-amplify/graphql-schema-generator@0.11.16"
# The registry's dist.integrity of that version's tarball.
INTEGRITY = (
    "sha512-EgPdizwxW2LOpoff9+z5vW4EFQFJRtmDplATt28ECOI/06jfYTavEKWnzK7JAfVrTKYBvHWMWCLcb2t"
    "/cjpb5g=="
)
MEMBER = "package/certs/aws-rds-global-bundle.pem"
GLOBAL_BUNDLE_CERTIFICATES = 118
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----\n", re.S)


def derive(tarball: bytes) -> bytes:
    """The global bundle out of the package's tarball, once the tarball is the pinned one."""
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if integrity != INTEGRITY:
        raise ValueError(f"the tarball's integrity is {integrity}, not the pinned {INTEGRITY}")
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "package.tgz"
        archive.write_bytes(tarball)
        with tarfile.open(archive) as package:
            member = package.extractfile(MEMBER)
            if member is None:
                raise ValueError(f"{PACKAGE} has no {MEMBER}")
            shipped = member.read()
    certificates = _PEM.findall(shipped)
    bundle = b"".join(certificates[:GLOBAL_BUNDLE_CERTIFICATES])
    if not shipped.startswith(bundle) or len(certificates) <= GLOBAL_BUNDLE_CERTIFICATES:
        raise ValueError(f"{MEMBER} does not begin with {GLOBAL_BUNDLE_CERTIFICATES} certificates")
    return bundle


def packed() -> bytes:
    """The pinned package's tarball, as npm downloads it."""
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(  # noqa: S603 - fixed argument list
            ["npm", "pack", PACKAGE, "--pack-destination", scratch, "--silent"],  # noqa: S607
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (tarball,) = Path(scratch).glob("*.tgz")
        return tarball.read_bytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {RDS_CA_BUNDLE}")
    arguments = parser.parse_args(argv)
    bundle = derive(packed())
    digest = hashlib.sha256(bundle).hexdigest()
    print(f"{PACKAGE} {MEMBER}: {GLOBAL_BUNDLE_CERTIFICATES} certificates, SHA-256 {digest}")
    if digest != RDS_CA_BUNDLE_SHA256:
        print(f"not the recorded SHA-256 {RDS_CA_BUNDLE_SHA256}", file=sys.stderr)
        return 1
    if arguments.write:
        RDS_CA_BUNDLE.write_bytes(bundle)
    elif RDS_CA_BUNDLE.read_bytes() != bundle:
        print(f"{RDS_CA_BUNDLE} differs (--write replaces it)", file=sys.stderr)
        return 1
    print(f"{RDS_CA_BUNDLE}: the same bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
