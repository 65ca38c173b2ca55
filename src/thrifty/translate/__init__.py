"""Other APIs' request and response shapes, translated to and from thrifty's chat request; no I/O."""
