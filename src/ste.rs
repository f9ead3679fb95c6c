//! Stream table entries (IHI 0070 §5.2), L1 stream-table descriptors and stream-table geometry.
