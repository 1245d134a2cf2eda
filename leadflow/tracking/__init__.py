"""The first-party tracking script's side of leadflow: its visitors and their page views while
nobody knows who they are (`visitors`), where a visitor came from (`source`), and the moment a
visitor becomes a lead (`stitch`)."""
