//! Queue index arithmetic for PROD/CONS: index, wrap bit and overflow flag (IHI 0070 §3.5).
