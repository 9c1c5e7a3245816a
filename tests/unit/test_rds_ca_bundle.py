"""The RDS CA bundle the database functions verify the server with: AWS's bundle, byte
for byte the recorded one, and nothing else goes into the code asset."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from escalator.config import RDS_CA_BUNDLE

# (infra.bundling is the CDK's: it runs in its JavaScript runtime, on the one worker that
# starts it)
pytestmark = pytest.mark.xdist_group("cdk")

# The regions whose RDS root CAs (RSA2048, RSA4096 and ECC384, "G1") AWS's global bundle
# held when the shipped copy was taken (May 2024); Beta and Preview are AWS's own.
# fmt: off
REGIONS = (
    "af-south-1", "ap-east-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
    "ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3",
    "ap-southeast-4", "ca-central-1", "eu-central-1", "eu-central-2", "eu-north-1",
    "eu-south-1", "eu-south-2", "eu-west-1", "eu-west-2", "eu-west-3", "il-central-1",
    "me-central-1", "me-south-1", "sa-east-1", "us-east-1", "us-east-2", "us-west-1",
    "us-west-2", "Beta us-east-1", "Preview us-east-2",
)
# fmt: on


def common_name(certificate: x509.Certificate) -> str:
    return str(certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_the_shipped_bundle_is_the_recorded_one() -> None:
    from infra.bundling import verified_rds_ca_bundle

    data = verified_rds_ca_bundle()

    assert data == RDS_CA_BUNDLE.read_bytes()
    assert len(data) == 178_780


def test_it_holds_the_rds_root_cas_of_every_region_and_only_ca_certificates() -> None:
    certificates = x509.load_pem_x509_certificates(RDS_CA_BUNDLE.read_bytes())

    assert len(certificates) == 118
    for certificate in certificates:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.value.ca is True, common_name(certificate)
        assert certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
            "Amazon Web Services, Inc."
        )
    roots = {common_name(c): c for c in certificates if " Root CA " in common_name(c)}
    for region in REGIONS:
        for kind in ("RSA2048", "RSA4096", "ECC384"):
            root = roots[f"Amazon RDS {region} Root CA {kind} G1"]
            # self-signed, by the key it names
            root.verify_directly_issued_by(root)
            assert root.not_valid_after_utc.year >= 2061
    # and Python's ssl reads it as CA certificates too
    context = ssl.create_default_context(cafile=str(RDS_CA_BUNDLE))
    assert context.cert_store_stats()["x509_ca"] == 118


def test_other_bytes_are_refused_and_never_bundled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra import bundling
    from infra.bundling import BundlingError, LocalBundling, verified_rds_ca_bundle

    # GIVEN a package whose bundle differs from the recorded one in one byte
    package = tmp_path / "escalator"
    (package / "certs").mkdir(parents=True)
    data = bytearray(RDS_CA_BUNDLE.read_bytes())
    data[100] ^= 1
    (package / "certs" / RDS_CA_BUNDLE.name).write_bytes(bytes(data))

    # THEN it is refused, by name, and bundling stops before anything is built
    with pytest.raises(BundlingError, match="not the recorded 2c151768"):
        verified_rds_ca_bundle(package)
    monkeypatch.setattr(bundling, "PACKAGE", package)
    output = tmp_path / "asset"
    output.mkdir()
    with pytest.raises(BundlingError, match="not the RDS CA bundle the functions are to trust"):
        LocalBundling().try_bundle(str(output), image=None)  # type: ignore[arg-type]
    assert list(output.iterdir()) == []
