"""CPU speed: fp32 linear layers through oneDNN (``linear``) and glibc allocator tuning
(``allocator``)."""
