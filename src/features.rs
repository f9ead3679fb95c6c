//! `Features`: SMMU_IDR0..IDR5, IIDR and AIDR decoded into typed values.
