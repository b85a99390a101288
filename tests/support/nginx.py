"""Debian's nginx in front of the app, on loopback ports, configured from the shipped site file.

The site file deploy/nginx/chat-assistant.conf is used as it is, except for what only a real host
has: its ports, its certificate and the app's port. Each of those substitutions must match exactly
once, so a change to the shipped file that the test no longer covers fails loudly.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from tests.support.servers import ROOT, free_port, stop_process_group
from tests.support.waiting import wait_until

SITE_FILE = ROOT / "deploy" / "nginx" / "chat-assistant.conf"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate valid for 127.0.0.1 and chat.example.com; returns (cert, key)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=chat.example.com",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:chat.example.com",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def _replace_once(text: str, old: str, new: str) -> str:
    count = text.count(old)
    if count != 1:
        raise AssertionError(f"{SITE_FILE.name} should contain {old!r} exactly once, found {count}")
    return text.replace(old, new)


class Nginx:
    """nginx (daemon off, everything under `folder`) proxying to the app on `app_port`."""

    def __init__(self, folder: Path, app_port: int):
        self.folder = folder
        self.app_port = app_port
        self.http_port = free_port()
        self.https_port = free_port()
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        self.https_url = f"https://127.0.0.1:{self.https_port}"
        self.process: subprocess.Popen | None = None
        self.certificate, key = self_signed_certificate(folder)
        self.site = folder / "site.conf"
        self.site.write_text(self._site(key))
        self.config = folder / "nginx.conf"
        self.config.write_text(self._main())

    def _site(self, key: Path) -> str:
        site = SITE_FILE.read_text()
        for old, new in [
            ("server 127.0.0.1:1342;", f"server 127.0.0.1:{self.app_port};"),
            ("listen 80;", f"listen 127.0.0.1:{self.http_port};"),
            ("listen [::]:80;", ""),
            ("listen 443 ssl;", f"listen 127.0.0.1:{self.https_port} ssl;"),
            ("listen [::]:443 ssl;", ""),
            ("/etc/letsencrypt/live/chat.example.com/fullchain.pem", str(self.certificate)),
            ("/etc/letsencrypt/live/chat.example.com/privkey.pem", str(key)),
            ("root /var/www/html;", f"root {self.folder};"),
        ]:
            site = _replace_once(site, old, new)
        return site

    def _main(self) -> str:
        """A main nginx.conf whose pid, logs and temp files all live in the folder."""
        temp_paths = "\n".join(
            f"    {name}_temp_path {self.folder / name};"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        # As root, workers would switch to "nobody" and could not read this private folder.
        user = "user root;\n" if os.geteuid() == 0 else ""
        return (
            f"{user}worker_processes 1;\ndaemon off;\npid {self.folder / 'nginx.pid'};\n"
            f"error_log {self.folder / 'error.log'} info;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            f"    access_log {self.folder / 'access.log'};\n{temp_paths}\n"
            f"    include {self.site};\n"
            "}\n"
        )

    def _command(self, *extra: str) -> list[str]:
        binary = nginx_binary()
        assert binary, "nginx is not installed (scripts/test.sh installs nginx-light)"
        return [binary, "-p", str(self.folder), "-c", str(self.config), "-e", str(self.folder / "error.log"), *extra]

    def start(self, timeout: float = 15.0) -> Nginx:
        check = subprocess.run(self._command("-t"), capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        self.process = subprocess.Popen(
            self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            wait_until(self._accepting, timeout, message="nginx accepting connections")
        except (RuntimeError, TimeoutError) as error:
            raise RuntimeError(f"nginx did not start ({error}):\n{self.error_log()}") from None
        return self

    def _accepting(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"nginx exited with {self.process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", self.https_port), timeout=1):
                return True
        except OSError:
            return False

    def error_log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process_group(self.process, signal.SIGQUIT, timeout=10)  # SIGQUIT: finish open requests

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
