"""Does a measured method carry the Fashion-MNIST recipe to 64x? (the protocol in ``protocol``)."""
