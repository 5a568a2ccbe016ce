"""Fakes of services tests cannot reach; each speaks the real protocol so real clients run against it."""
