"""The CC-iSales side: the client (:mod:`.client`) over the wire (:mod:`.wire`), the pure
paging walk (:mod:`.paging`) and page validation (:mod:`.page`), error wording
(:mod:`.diagnosis`), the client's errors (:mod:`.errors`) and the vendor's constants
(:mod:`.vendor`, shared with the simulator). Nothing here knows the database."""
