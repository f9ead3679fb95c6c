//! Event queue records (IHI 0070 §7): the typed `EventRecord` and its raw 32-byte `EvtqEntry`.
