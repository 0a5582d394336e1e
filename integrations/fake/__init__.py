"""A platform in memory, for tests of the inbox that should not be tests of XMS."""
