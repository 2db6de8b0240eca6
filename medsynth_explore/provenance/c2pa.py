"""C2PA manifests: sign exported images with the official library (``c2pa-python``) and read them back.

A C2PA manifest is a signed statement embedded in the file (a ``caBX`` chunk
in PNG, APP11 segments in JPEG) that says how the image was made. Ours holds
one ``c2pa.created`` action whose ``digitalSourceType`` is IPTC's
``trainedAlgorithmicMedia`` and whose parameters name the generator, its
checkpoint SHA-256, the digest of its model card, the seed, the sampler
settings and the conditions. The claim's hard binding is a SHA-256 of every
byte of the file outside the manifest store, so the PNG text chunks and the
XMP packet written before signing stay as they are and are covered by the
signature; any later change to the pixels or labels shows as
``assertion.dataHash.mismatch``.

Signing works offline with a key and certificate chain the user gives
(:class:`C2PASigner`); nothing is fetched (no time-stamp authority unless one
is named, no OCSP, no remote manifests). :func:`make_test_signer` makes a
local root and signing certificate for tests and tutorials: **its signer is
untrusted** by anyone but whoever passes its root as a trust anchor, and it
says nothing about who made the image.

What is and is not deterministic
--------------------------------
The manifest label (``urn:c2pa:<uuid>``) and ``instance_id`` are derived from
the export and the file name, thumbnails are off, no time stamp is added, and
Ed25519 signatures are deterministic. One part is random and cannot be fixed
from outside the library: c2pa-rs salts every assertion box with 16 bytes from
the operating system's random generator (``sdk/src/salt.rs``, ``DefaultSalt``;
the C2PA specification wants salts unpredictable), and the claim hashes those
boxes. So two signings of the same image differ in the salt boxes, the hashed
URIs in the claim and the signature, all inside the manifest store, and
nowhere else: :func:`strip_c2pa` of either gives the same bytes.

Examples
--------
>>> import io, numpy as np
>>> from PIL import Image
>>> buf = io.BytesIO(); Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, "PNG")
>>> signer = make_test_signer(seed=0)
>>> signed = sign_bytes(buf.getvalue(), signer, created_manifest("x.png", "image/png", {"generator": "demo"}))
>>> report = read_c2pa(signed)
>>> report.present, report.valid, report.trusted, strip_c2pa(signed) == buf.getvalue()
(True, True, False, True)
>>> read_c2pa(signed, trust_anchors=signer.trust_anchors).trusted
True
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import DataError, MedsynthError

__all__ = [
    "C2PASigner",
    "C2PAReport",
    "make_test_signer",
    "created_manifest",
    "deterministic_label",
    "sign_bytes",
    "sign_file",
    "read_c2pa",
    "strip_c2pa",
    "sniff_format",
    "DIGITAL_SOURCE_TYPE_URI",
    "TAMPER_CODES",
]

DIGITAL_SOURCE_TYPE_URI = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
#: Validation codes that mean the file changed after it was signed (its bytes no longer hash to the claim).
TAMPER_CODES = ("assertion.dataHash.mismatch", "assertion.boxesHash.mismatch", "assertion.bmffHash.mismatch")
#: Validation codes that only say the signer is not in the trust list (expected for a locally made certificate).
UNTRUSTED_CODES = ("signingCredential.untrusted",)
_OFFLINE = {"verify": {"ocsp_fetch": False, "remote_manifest_fetch": False}}
_ALGS = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _lib():
    try:
        import c2pa
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise MedsynthError("C2PA manifests need c2pa-python: pip install c2pa-python (a dependency of the package).") from exc
    return c2pa


# --------------------------------------------------------------------------- signer
def _load_chain(pem: bytes) -> list:
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise DataError(f"the certificate chain is not PEM X.509 certificates: {exc}") from exc
    if not certs:
        raise DataError("the certificate chain holds no certificate.")
    return certs


def _alg_for(key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name not in by_curve:
            raise DataError(f"C2PA signs with P-256, P-384 or P-521 EC keys; this key is on {key.curve.name}.")
        return by_curve[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise DataError(f"C2PA signs with Ed25519, EC (P-256/384/521) or RSA-PSS keys; got a {type(key).__name__}.")


@dataclass(frozen=True)
class C2PASigner:
    """A key and certificate chain to sign C2PA manifests with (offline).

    Parameters
    ----------
    certificate_chain : bytes
        PEM certificates, the signing certificate first, then its issuers
        (the root may be left out). C2PA wants a signing certificate that is
        not a CA, with key usage ``digitalSignature`` and an extended key
        usage such as e-mail protection or document signing.
    private_key : bytes
        The signing certificate's private key, PEM (PKCS#8 or traditional),
        unencrypted.
    alg : str, optional
        ``es256``, ``es384``, ``es512``, ``ps256``, ``ps384``, ``ps512`` or
        ``ed25519``; found from the key when omitted.
    tsa_url : str, optional
        A time-stamp authority to ask while signing (needs the network);
        none by default, so nothing leaves the machine.
    trust_anchors : bytes, optional
        Root certificate(s), PEM, for reading back as trusted (kept for
        convenience; a reader passes its own).

    Raises
    ------
    DataError
        Unreadable PEM, a key that does not match the certificate, an
        unsupported key type or algorithm.

    Notes
    -----
    The object holds the private key: when an export runs on Dask workers it
    travels with each task to the workers of your cluster.
    """

    certificate_chain: bytes
    private_key: bytes = field(repr=False)
    alg: str | None = None
    tsa_url: str | None = None
    trust_anchors: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from cryptography.hazmat.primitives import serialization

        chain, key_pem = bytes(self.certificate_chain), bytes(self.private_key)
        object.__setattr__(self, "certificate_chain", chain)
        object.__setattr__(self, "private_key", key_pem)
        certs = _load_chain(chain)
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise DataError(f"cannot read the private key (PEM, unencrypted): {exc}") from exc
        pub = serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(serialization.Encoding.DER, pub) != certs[0].public_key().public_bytes(
            serialization.Encoding.DER, pub
        ):
            raise DataError("the private key does not belong to the first certificate of the chain (the signing certificate).")
        alg = (self.alg or _alg_for(key)).lower()
        if alg not in _ALGS:
            raise DataError(f"unknown C2PA signing algorithm {self.alg!r}; use one of {', '.join(_ALGS)}.")
        object.__setattr__(self, "alg", alg)
        if self.trust_anchors is not None:
            object.__setattr__(self, "trust_anchors", bytes(self.trust_anchors))
            _load_chain(self.trust_anchors)

    @classmethod
    def from_files(cls, certificate_chain: Any, private_key: Any, **kw: Any) -> "C2PASigner":
        """Read the chain and key from PEM files."""
        out = []
        for what, p in (("certificate chain", certificate_chain), ("private key", private_key)):
            try:
                out.append(Path(p).expanduser().read_bytes())
            except OSError as exc:
                raise DataError(f"cannot read the {what} file {str(p)!r}: {exc}") from exc
        return cls(out[0], out[1], **kw)

    def describe(self) -> dict:
        """Who signs: subject, issuer, algorithm, SHA-256 fingerprint and validity of the signing certificate."""
        from cryptography.hazmat.primitives import hashes

        cert = _load_chain(self.certificate_chain)[0]
        return {
            "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(),
            "alg": self.alg,
            "certificate_sha256": cert.fingerprint(hashes.SHA256()).hex(),
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "time_stamp_authority": self.tsa_url,
        }

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the signing certificate (DER), hex."""
        return self.describe()["certificate_sha256"]


def make_test_signer(
    folder: Any = None,
    common_name: str = "medsynth-explore test signer (UNTRUSTED)",
    seed: int | None = None,
    alg: str = "ed25519",
) -> C2PASigner:
    """A locally made root certificate and signing certificate, for tests and tutorials only.

    The signer is **untrusted**: no C2PA trust list knows its root, and its
    name is whatever was typed here. Readers report its manifests as valid
    (intact, correctly signed) but not trusted, unless they pass
    ``signer.trust_anchors`` (the local root) as a trust anchor.

    Parameters
    ----------
    folder : path-like, optional
        Also write ``signer-chain.pem``, ``signer-key.pem`` and
        ``test-root.pem`` there.
    common_name : str
    seed : int, optional
        Derive the keys from this seed (same seed, same certificates). Such
        keys are public knowledge: never use them for anything but tests.
        Without a seed the keys are random.
    alg : {"ed25519", "es256"}

    Returns
    -------
    C2PASigner
        With ``trust_anchors`` set to the local root.

    Examples
    --------
    >>> s = make_test_signer(seed=1)
    >>> s.alg, "UNTRUSTED" in s.describe()["subject"], s.fingerprint == make_test_signer(seed=1).fingerprint
    ('ed25519', True, True)
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def key_for(role: str):
        if alg == "ed25519":
            if seed is None:
                return ed25519.Ed25519PrivateKey.generate()
            secret = hashlib.sha256(f"medsynth-test-key|{seed}|{role}".encode()).digest()
            return ed25519.Ed25519PrivateKey.from_private_bytes(secret)
        if alg == "es256":
            if seed is None:
                return ec.generate_private_key(ec.SECP256R1())
            value = int.from_bytes(hashlib.sha256(f"medsynth-test-key|{seed}|{role}".encode()).digest(), "big")
            return ec.derive_private_key(value % (_P256_ORDER - 1) + 1, ec.SECP256R1())
        raise DataError(f"make_test_signer makes ed25519 or es256 keys, not {alg!r}.")

    def name(cn: str):
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "medsynth-explore local test (not a trusted signer)"),
            ]
        )

    sig_hash = None if alg == "ed25519" else hashes.SHA256()
    start, end = _dt.datetime(2024, 1, 1, tzinfo=_dt.timezone.utc), _dt.datetime(2049, 12, 31, tzinfo=_dt.timezone.utc)
    root_key, leaf_key = key_for("root"), key_for("leaf")
    serial = None if seed is None else 1 + int.from_bytes(hashlib.sha256(f"{seed}|{common_name}".encode()).digest()[:8], "big")
    usage = dict(key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False, decipher_only=False)
    root = (
        x509.CertificateBuilder()
        .subject_name(name("medsynth-explore local test root (UNTRUSTED)"))
        .issuer_name(name("medsynth-explore local test root (UNTRUSTED)"))
        .public_key(root_key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_cert_sign=True, crl_sign=True, **usage),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, sig_hash)
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name(common_name))
        .issuer_name(root.subject)
        .public_key(leaf_key.public_key())
        .serial_number((serial + 1) if serial else x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=True, key_cert_sign=False, crl_sign=False, **usage),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, sig_hash)
    )
    pem = serialization.Encoding.PEM
    chain = leaf.public_bytes(pem) + root.public_bytes(pem)
    key_pem = leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    signer = C2PASigner(chain, key_pem, alg=alg, trust_anchors=root.public_bytes(pem))
    if folder is not None:
        d = Path(folder).expanduser()
        d.mkdir(parents=True, exist_ok=True)
        (d / "signer-chain.pem").write_bytes(chain)
        (d / "signer-key.pem").write_bytes(key_pem)
        (d / "test-root.pem").write_bytes(root.public_bytes(pem))
    return signer


# --------------------------------------------------------------------------- manifests
def deterministic_label(*parts: Any) -> str:
    """A UUID (version 4 layout) derived from ``parts``: same parts, same id.

    Examples
    --------
    >>> deterministic_label("a", 1) == deterministic_label("a", 1), len(deterministic_label("a"))
    (True, 36)
    """
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def created_manifest(
    title: str,
    fmt: str,
    parameters: Mapping[str, Any],
    label_parts: tuple = (),
    software: Mapping[str, str] | None = None,
) -> dict:
    """The manifest definition of one generated image: a ``c2pa.created`` action, trainedAlgorithmicMedia.

    Parameters
    ----------
    title : str
        File name shown by C2PA readers.
    fmt : str
        ``image/png`` or ``image/jpeg``.
    parameters : mapping
        What made the image (generator, checkpoint_sha256, model_card_sha256,
        seed, sampler, conditions); plain JSON values.
    label_parts : tuple
        When given, the manifest label and instance id are derived from them
        (e.g. the export's token and the file name) instead of drawn at random.
    software : mapping, optional
        ``name`` and ``version`` of the software agent (default: this package).

    Examples
    --------
    >>> m = created_manifest("a.png", "image/png", {"seed": 1}, label_parts=("t", "a.png"))
    >>> m["assertions"][0]["data"]["actions"][0]["digitalSourceType"] == DIGITAL_SOURCE_TYPE_URI
    True
    """
    if software is None:
        from .. import __version__

        software = {"name": "medsynth-explore", "version": __version__}
    try:
        params = json.loads(json.dumps(dict(parameters), sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise DataError(f"the C2PA action parameters must be plain JSON values: {exc}") from exc
    definition = {
        "claim_generator_info": [dict(software)],
        "title": str(title),
        "format": fmt,
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": DIGITAL_SOURCE_TYPE_URI,
                            "softwareAgent": dict(software),
                            "description": "Synthetic image made by a generative model; it shows no real patient.",
                            "parameters": params,
                        }
                    ]
                },
            }
        ],
    }
    if label_parts:
        definition["label"] = "urn:c2pa:" + deterministic_label("manifest", *label_parts)
        definition["instance_id"] = "xmp:iid:" + deterministic_label("instance", *label_parts)
    return definition


def sniff_format(data: bytes) -> str | None:
    """MIME type of PNG or JPEG bytes, else None.

    Examples
    --------
    >>> sniff_format(b"\\xff\\xd8\\xff\\xe0"), sniff_format(b"GIF89a")
    ('image/jpeg', None)
    """
    if data[:8] == _PNG_MAGIC:
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    return None


def _context(settings: Mapping | None = None):
    c2pa = _lib()
    merged = {"builder": {"thumbnail": {"enabled": False}}, "verify": {**_OFFLINE["verify"], "verify_after_sign": True}}
    for k, v in (settings or {}).items():
        merged[k] = {**merged.get(k, {}), **v}
    return c2pa.Context.from_dict(merged)


def sign_bytes(data: bytes, signer: C2PASigner, manifest: Mapping[str, Any], fmt: str | None = None) -> bytes:
    """Embed a signed C2PA manifest in PNG or JPEG bytes.

    Parameters
    ----------
    data : bytes
        The finished image file (labels and XMP already in it).
    signer : C2PASigner
    manifest : mapping
        A manifest definition, e.g. from :func:`created_manifest`.
    fmt : str, optional
        MIME type; found from the bytes when omitted.

    Returns
    -------
    bytes
        The same file with its manifest store added.

    Raises
    ------
    DataError
        Not PNG/JPEG, a file that already carries a manifest, or the
        library refusing the key, certificate or manifest (its message is kept).
    """
    if not isinstance(signer, C2PASigner):
        raise DataError(f"signer must be a C2PASigner (e.g. C2PASigner.from_files(chain, key)); got {type(signer).__name__}.")
    fmt = fmt or sniff_format(data)
    if fmt not in ("image/png", "image/jpeg"):
        raise DataError("only PNG and JPEG files are signed here; these bytes are neither.")
    c2pa = _lib()
    info = c2pa.C2paSignerInfo(
        alg=signer.alg.encode(),
        sign_cert=signer.certificate_chain,
        private_key=signer.private_key,
        ta_url=signer.tsa_url.encode() if signer.tsa_url else None,
    )
    out = io.BytesIO()
    try:
        with _context() as ctx, c2pa.Signer.from_info(info) as native, c2pa.Builder(dict(manifest), ctx) as builder:
            builder.sign(native, fmt, io.BytesIO(data), out)
    except c2pa.C2paError as exc:
        raise DataError(f"C2PA signing failed: {exc}") from exc
    return out.getvalue()


def sign_file(path: Any, signer: C2PASigner, manifest: Mapping[str, Any], out: Any = None) -> Path:
    """Sign a PNG or JPEG file in place (or into ``out``), atomically.

    Returns
    -------
    pathlib.Path
        The signed file.
    """
    src = Path(path).expanduser()
    try:
        data = src.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {str(src)!r}: {exc}") from exc
    signed = sign_bytes(data, signer, manifest)
    dest = Path(out).expanduser() if out is not None else src
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(signed)
    tmp.replace(dest)
    return dest


# --------------------------------------------------------------------------- reading
@dataclass
class C2PAReport:
    """What :func:`read_c2pa` found in one file.

    Attributes
    ----------
    present : bool
        The file carries a C2PA manifest store.
    manifest : dict or None
        The active manifest (claim generator, title, assertions, signature info).
    state : str or None
        The library's validation state: ``"Trusted"``, ``"Valid"`` (intact
        and correctly signed, signer not in the trust list) or ``"Invalid"``.
    valid : bool
        Intact and correctly signed (state Valid or Trusted).
    trusted : bool
        Signed by a certificate that chains to a trust anchor given.
    tampered : bool
        The file's bytes changed after signing (:data:`TAMPER_CODES`).
    failures : list of str
        Failure codes, with ``signingCredential.untrusted`` left out unless
        trust anchors were given.
    error : str or None
        Why the store could not be read, when it could not.
    """

    present: bool = False
    manifest: dict | None = None
    state: str | None = None
    valid: bool = False
    trusted: bool = False
    tampered: bool = False
    failures: list = field(default_factory=list)
    error: str | None = None

    def action(self) -> dict | None:
        """The ``c2pa.created`` action of the active manifest, if any."""
        for a in (self.manifest or {}).get("assertions", []):
            if str(a.get("label", "")).startswith("c2pa.actions"):
                for act in a.get("data", {}).get("actions", []):
                    if act.get("action") == "c2pa.created":
                        return act
        return None

    def summary(self) -> str:
        """One phrase: ``valid, untrusted signer "CN"``, ``tampered``, ``none``, ..."""
        if not self.present:
            return "none"
        if self.error:
            return f"unreadable ({self.error})"
        sig = (self.manifest or {}).get("signature_info", {})
        who = sig.get("common_name") or sig.get("issuer") or "?"
        if self.tampered:
            return f"TAMPERED ({', '.join(self.failures)})"
        if not self.valid:
            return f"INVALID ({', '.join(self.failures) or self.state})"
        return f"valid, {'trusted' if self.trusted else 'untrusted'} signer {who!r}"


def read_c2pa(source: Any, fmt: str | None = None, trust_anchors: bytes | str | None = None) -> C2PAReport:
    """Read and validate the C2PA manifest of a file (path or bytes), offline.

    Parameters
    ----------
    source : path-like or bytes
    fmt : str, optional
        MIME type; found from the bytes (PNG, JPEG) or the file extension.
    trust_anchors : bytes or str, optional
        PEM root certificate(s) to trust; without them no signer is trusted
        (``trusted`` is False) and the untrusted-signer code is not counted
        as a failure.

    Returns
    -------
    C2PAReport
        Never raises for a damaged or foreign manifest: ``present``,
        ``valid``, ``tampered``, ``failures`` and ``error`` say what was found.
    """
    c2pa = _lib()
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, suffix = bytes(source), ""
    else:
        path = Path(source).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read {str(path)!r}: {exc}") from exc
        suffix = path.suffix.lower().lstrip(".")
    fmt = fmt or sniff_format(data) or suffix or "application/octet-stream"
    settings = {}
    if trust_anchors:
        pem = trust_anchors.decode() if isinstance(trust_anchors, (bytes, bytearray)) else str(trust_anchors)
        settings = {"trust": {"user_anchors": pem}}
    report = C2PAReport()
    try:
        with _context(settings) as ctx, c2pa.Reader(fmt, io.BytesIO(data), context=ctx) as reader:
            store = json.loads(reader.json())
            state = reader.get_validation_state()
    except c2pa.C2paError as exc:
        text = str(exc)
        if "ManifestNotFound" in type(exc).__name__ or "no JUMBF data" in text or "ManifestNotFound" in text:
            return report
        if "NotSupported" in type(exc).__name__ or "NotSupported" in text:
            report.error = f"format not supported by C2PA: {text}"
            return report
        report.present, report.error, report.state = True, text, "Invalid"
        report.failures = ["unreadable"]
        return report
    report.present = True
    report.state = state
    active = store.get("active_manifest")
    report.manifest = (store.get("manifests") or {}).get(active)
    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    codes = [f.get("code", "") for f in results.get("failure", [])]
    codes += [f.get("code", "") for f in store.get("validation_status", []) or [] if f.get("code") not in codes]
    report.failures = [c for c in codes if trust_anchors or c not in UNTRUSTED_CODES]
    report.tampered = any(c in TAMPER_CODES for c in codes)
    report.trusted = state == "Trusted"
    report.valid = state in ("Valid", "Trusted") and report.manifest is not None and not report.tampered
    return report


# --------------------------------------------------------------------------- stripping
def _png_chunks(data: bytes):
    if data[:8] != _PNG_MAGIC:
        raise DataError("not a PNG file.")
    i = 8
    while i + 12 <= len(data):
        n = int.from_bytes(data[i : i + 4], "big")
        end = i + 12 + n
        if end > len(data):
            raise DataError("truncated PNG chunk.")
        yield data[i + 4 : i + 8], data[i:end]
        i = end
    if i != len(data):
        raise DataError("trailing bytes after the PNG chunks.")


def _jpeg_without_app11(data: bytes) -> bytes:
    out, i = [data[:2]], 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise DataError("malformed JPEG marker.")
        marker = data[i + 1]
        if marker == 0xDA:  # start of scan: the rest is image data
            out.append(data[i:])
            return b"".join(out)
        n = int.from_bytes(data[i + 2 : i + 4], "big")
        seg = data[i : i + 2 + n]
        if not (marker == 0xEB and b"jumb" in seg[:40]):  # APP11 carrying JUMBF (C2PA)
            out.append(seg)
        i += 2 + n
    raise DataError("JPEG without image data.")


def strip_c2pa(data: bytes) -> bytes:
    """The file without its C2PA manifest store (PNG ``caBX`` chunks, JPEG APP11 JUMBF segments).

    For a file signed by :func:`sign_bytes` this gives back exactly the bytes
    that were signed. Other formats raise :class:`DataError`.
    """
    fmt = sniff_format(data)
    if fmt == "image/png":
        return _PNG_MAGIC + b"".join(chunk for kind, chunk in _png_chunks(data) if kind != b"caBX")
    if fmt == "image/jpeg":
        return _jpeg_without_app11(data)
    raise DataError("strip_c2pa reads PNG and JPEG files only.")
