//! PRI queue entries (IHI 0070 §8): page requests from PCIe devices.
