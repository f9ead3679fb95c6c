//! The physical SMMUv3 driver: probe, reset, stream tables, command queue, IRQ-path drains.
