"""Building the authenticator from the settings: providers, policies, tokens and shared state."""

from __future__ import annotations

from ..config import AuthSettings, ConfigError, PolicySettings
from ..config.settings import AuthLimitSettings
from ..redis_store import RedisStore
from .accounts import Accounts
from .authenticator import Authenticator
from .plugins import instantiate
from .providers import build_providers
from .sessions import Sessions
from .state import AuthState
from .throttle import Throttle
from .tokens import SigningKeys, Tokens

DEFAULT_API_ACCESS = "qs_gateway.auth.policies:BasicAPIAccessControl"
DEFAULT_RESOURCE_ACCESS = "qs_gateway.auth.policies:DefaultResourceAccessControl"


def _policy(settings: PolicySettings, section: str, default: str, required: tuple[str, ...]) -> object:
    policy = instantiate(settings.policy or default, dict(settings.args), section, "policy")
    missing = [name for name in required if not callable(getattr(policy, name, None))]
    if missing:
        raise ConfigError(f"{section}.policy: {settings.policy!r} lacks {', '.join(missing)}")
    return policy


def build_authenticator(
    auth: AuthSettings, store: RedisStore, limits: AuthLimitSettings = AuthLimitSettings()
) -> tuple[Authenticator, Accounts]:
    """Opens nothing: Redis is first used by a request, the access server polled from a worker."""
    for index, key in enumerate(auth.secret_keys):
        if not key:
            raise ConfigError(f"authentication.secret_keys[{index}]: an empty key is not allowed")
    api_access = _policy(
        auth.api_access,
        "api_access",
        DEFAULT_API_ACCESS,
        ("is_user_known", "get_user_roles", "get_user_scopes", "get_displayed_user_name"),
    )
    share_through = getattr(api_access, "share_through", None)
    if callable(share_through):  # a policy with downloaded state shares it between workers
        share_through(store)
    resource_access = _policy(auth.resource_access, "resource_access", DEFAULT_RESOURCE_ACCESS, ("get_resource_group",))
    state = AuthState(store)
    authenticator = Authenticator(
        single_user_api_key=auth.single_user_api_key,
        allow_anonymous_access=auth.allow_anonymous_access,
        api_access=api_access,
        resource_access=resource_access,
        providers=build_providers(auth.providers),
        state=state,
        tokens=Tokens(
            SigningKeys(auth.secret_keys, state.shared_signing_key),
            access_max_age=auth.access_token_max_age,
            refresh_max_age=auth.refresh_token_max_age,
        ),
        sessions=Sessions(state, reuse_grace=limits.refresh_reuse_grace),
        throttle=Throttle(
            store,
            login_per_user=limits.login_failures_per_user,
            login_per_address=limits.login_failures_per_address,
            credentials_per_address=limits.credential_failures_per_address,
        ),
    )
    return authenticator, Accounts(authenticator, session_max_age=auth.session_max_age)
