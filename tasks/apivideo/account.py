"""api.video as one account's API key sees it: the calls a worker makes with a key, each sent with
the fleet's cached access token (``AccessTokens``: one authentication per expiry, a 401 renews it)."""

from __future__ import annotations

from typing import Any

from tasks.apivideo.access_tokens import AccessTokens
from tasks.apivideo.client import ApiClient


class AccountApi:
    """The API-key half of api.video for one account; ``available`` is False without a key."""

    def __init__(self, api: ApiClient, tokens: AccessTokens) -> None:
        self.api, self.tokens = api, tokens

    @property
    def available(self) -> bool:
        return self.tokens.available

    def create_upload_token(self, ttl_s: int) -> str:
        return self.tokens.call(lambda authorization: self.api.create_upload_token(authorization, ttl_s))

    def upload_token(self, token: str) -> dict[str, Any] | None:
        """This account's active upload token ``token``, or None (another account's, expired, deleted)."""
        return self.tokens.call(lambda authorization: self.api.upload_token(authorization, token))

    def delete_upload_token(self, token: str) -> None:
        self.tokens.call(lambda authorization: self.api.delete_upload_token(authorization, token))

    def create_video(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self.tokens.call(lambda authorization: self.api.create_video(authorization, payload))

    def find_videos(self, metadata: dict[str, str]) -> list[dict[str, Any]]:
        return self.tokens.call(lambda authorization: self.api.find_videos(authorization, metadata))

    def video_status(self, video_id: str) -> dict[str, Any]:
        return self.tokens.call(lambda authorization: self.api.video_status(authorization, video_id))

    def patch_video(self, video_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.tokens.call(lambda authorization: self.api.patch_video(authorization, video_id, payload))

    def delete_video(self, video_id: str) -> None:
        self.tokens.call(lambda authorization: self.api.delete_video(authorization, video_id))
