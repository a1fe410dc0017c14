"""What every dispatcher's settings share: a ``transit_key`` (declared by
each channel's class, where it says what the key opens) that must read as
keys before the process starts."""

from pydantic import SecretStr, field_validator

from shared.sealed import transit_key_list
from shared.settings import ServiceSettings


class DispatchSettings(ServiceSettings):
    # check_fields=False: the field is each channel's, declared in its own
    # place (the generated Secret templates list fields in that order)
    @field_validator("transit_key", check_fields=False)
    @classmethod
    def _a_key(cls, value: SecretStr) -> SecretStr:
        transit_key_list(value)  # a bad key stops the start, not every job
        return value
