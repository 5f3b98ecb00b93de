"""The vendor's side of ``queryOBSResultCode``: its path, codes and limits.

Shared by the client and the bundled simulator (:mod:`obs_sync.simulator`), so both speak
the same table. Plain constants: no imports.
"""

from __future__ import annotations

SUCCESS = "0200000"
PATH_TEMPLATE = "/rest/isales/v1/openapi/campaigns/{vdn_id}/queryOBSResultCode"
MAX_PAGE_SIZE = 50  # the largest pageSize the vendor accepts

# The vendor's failure codes (resultCode / returnCode). All of them are parameter errors:
# repeating the same request cannot help, so none is retried.
FAILURE_CODES: dict[str, str] = {
    "0200001": "parameter error",
    "02000001": "parameter value is empty",
    "02000002": "parameter contains illegal characters",
    "02000003": "parameter longer than allowed",
    "02000004": "parameter shorter than allowed",
    "02000005": "parameter length outside the allowed range",
    "02000006": "parameter value has the wrong type",
    "02000007": "parameter value out of range",
    "02000008": "parameter conversion failed, check the request",
    "02000009": "invalid parameter combination",
    "02000010": "hour and minute must be given together",
    "02000011": "more parameters than allowed",
}
UNKNOWN_FAILURE = "unknown failure code (not in the vendor's table)"

# What a failure code most likely means for obs-sync's own requests, beyond the vendor's
# one-word meaning: (cause, fix). Inferred, not in the vendor's table: obs-sync sends only
# well-formed parameters, and a server answers 0200001 ("parameter error") for a vdnId it
# does not have. The messages say "likely" and keep the server's own resultDesc.
LIKELY_CAUSES: dict[str, tuple[str, str]] = {
    "0200001": (
        "the VDN does not exist on this iSales server",
        "check the VDN id against the VDNs configured on the server, and remove it from "
        "isales.vdn_ids if it is not there",
    ),
}

# The other code lists a call record carries (spec: isales-code-lists.md); same server,
# signing, envelope and failure codes. ``def_id`` is numeric text.
CAMPAIGNS_PREFIX = "/rest/isales/v1/openapi/campaigns/{vdn_id}"
DISPLAY_RESULTS_PATH = CAMPAIGNS_PREFIX + "/queryOBSResults"
DISPLAY_RESULT_DETAIL_PATH = CAMPAIGNS_PREFIX + "/{def_id}/queryObsResultDetail"
BUSINESS_RESULTS_PATH = CAMPAIGNS_PREFIX + "/queryBusinessResults"
