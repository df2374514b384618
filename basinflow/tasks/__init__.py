"""Units of work the flows call: cook one scan, write one referrer, check freshness."""
