//! Stage-1 context descriptors (IHI 0070 §5.4) and L1 CD descriptors.
