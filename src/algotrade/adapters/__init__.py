"""Adapters: the ports of :mod:`algotrade.domain` implemented on real technology and fakes."""
