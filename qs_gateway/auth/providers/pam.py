"""Login with the host's accounts through PAM (``pamela``)."""

from __future__ import annotations

from ...config import ConfigError


class PAMAuthenticator:
    mode = "password"

    def __init__(self, *, service: str = "login") -> None:
        try:
            import pamela
        except ImportError as exc:  # libpam missing
            raise ConfigError(f"PAM login needs the 'pamela' package and libpam: {exc}") from None
        if not isinstance(service, str) or not service:
            raise ConfigError(f"service: expected a PAM service name, got {service!r}")
        self._pamela = pamela
        self.service = service

    def authenticate(self, username: str, password: str) -> str | None:
        try:
            self._pamela.authenticate(username, password, service=self.service)
        except self._pamela.PAMError:
            return None
        return username
