//! Command queue entries (IHI 0070 §4): the typed `Command` and its raw 16-byte `CmdqEntry`.
