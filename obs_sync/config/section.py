"""What every configuration section shares."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

# A control character in a value that is sent or parsed is always a mistake (a stray
# newline from a file or an environment variable).
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Section(BaseModel):
    # nan/inf are never a sane timeout, interval or fraction (and .inf passes any lower bound).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
