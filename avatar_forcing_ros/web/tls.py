"""TLS for the web pages: the user's certificate, or a self-signed one made at start.

Browsers grant the microphone only in a secure context (HTTPS, or plain http on localhost), so the
operator page needs TLS as soon as it is reached from another machine. A self-signed certificate
makes the browser warn once; its SHA-256 fingerprint is printed so the user can compare it.
"""
from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def write_self_signed(folder: Path, hosts: list[str], days: int = 365) -> tuple[Path, Path]:
    """A new EC P-256 key and a self-signed certificate for ``hosts`` (names or IP addresses)
    in ``folder`` (cert.pem, key.pem, the key readable by its owner only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'avatar_forcing_ros web_display')])
    alt_names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts + ['localhost', '127.0.0.1']):
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / 'cert.pem', folder / 'key.pem'
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A server SSLContext (TLS 1.2+). Raises ValueError naming the file that cannot be used."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert_file), str(key_file))
    except (OSError, ssl.SSLError) as error:
        raise ValueError(f'cannot use certificate {cert_file} with key {key_file}: {error}') from None
    return context


def fingerprint(cert_file: Path) -> str:
    """SHA-256 fingerprint of a PEM certificate, as browsers show it (AA:BB:...)."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex(':').upper()
