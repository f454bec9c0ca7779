//! Gradient buckets: which parameter gradients travel together in one all-reduce, and when each
//! group may leave.
//!
//! Backward finishes the last layer's gradients first, so the parameters are taken in reverse layer
//! order (within a layer, in its own visiting order) and cut into buckets of about `cap` elements:
//! a bucket closes as soon as it holds `cap` or more, so a parameter larger than `cap` travels
//! alone and no parameter is ever split. Bucket `b` may be all-reduced as soon as the lowest layer
//! among its parameters has run its backward (every other layer in it ran before that one), which
//! is what lets communication overlap the rest of backward (as PyTorch's DDP does with 25 MB
//! buckets).
//!
//! Every replica builds the same plan from the same network, so every replica issues the same
//! buckets in the same order, as a [`super::Collective`] requires.

use std::ops::Range;

/// Where one parameter's gradient lives in the buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub bucket: usize,
    /// Offset in elements within the bucket.
    pub offset: usize,
    pub len: usize,
}

/// The buckets of a network, fixed once per run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketPlan {
    /// Elements in each bucket, in the order the buckets are issued.
    lens: Vec<usize>,
    /// Each parameter's slot, by its index in `Network::visit_params` order.
    slots: Vec<Slot>,
    /// The parameter indices of each layer.
    layer_params: Vec<Range<usize>>,
    /// The buckets that become complete when each layer's backward has run.
    ready_after: Vec<Range<usize>>,
}

impl BucketPlan {
    /// The plan for layers whose parameters have the element counts `layer_sizes[i]` (layer `i`'s
    /// parameters in visiting order), with buckets closed at `cap` elements (`cap >= 1`).
    pub fn new(layer_sizes: &[Vec<usize>], cap: usize) -> BucketPlan {
        let cap = cap.max(1);
        let mut layer_params = Vec::with_capacity(layer_sizes.len());
        let mut first = 0;
        for sizes in layer_sizes {
            layer_params.push(first..first + sizes.len());
            first += sizes.len();
        }
        let mut slots = vec![
            Slot {
                bucket: 0,
                offset: 0,
                len: 0
            };
            first
        ];
        let mut lens: Vec<usize> = Vec::new();
        // The lowest layer of each bucket: the bucket is complete after that layer's backward.
        let mut lowest_layer: Vec<usize> = Vec::new();
        let mut open = 0; // elements in the bucket being filled (the last of `lens`), 0: none open
        for (layer, sizes) in layer_sizes.iter().enumerate().rev() {
            for (k, &len) in sizes.iter().enumerate() {
                if open == 0 {
                    lens.push(0);
                    lowest_layer.push(layer);
                }
                let bucket = lens.len() - 1;
                slots[layer_params[layer].start + k] = Slot {
                    bucket,
                    offset: lens[bucket],
                    len,
                };
                lens[bucket] += len;
                lowest_layer[bucket] = layer;
                open = if lens[bucket] >= cap { 0 } else { lens[bucket] };
            }
        }
        // Buckets are issued in order and their lowest layers never increase, so the buckets
        // completed by each layer form a contiguous range.
        let ready_after = (0..layer_sizes.len())
            .map(|layer| {
                let start = lowest_layer.iter().position(|&l| l == layer);
                match start {
                    Some(s) => {
                        s..s + lowest_layer[s..]
                            .iter()
                            .take_while(|&&l| l == layer)
                            .count()
                    }
                    None => 0..0,
                }
            })
            .collect();
        BucketPlan {
            lens,
            slots,
            layer_params,
            ready_after,
        }
    }

    /// The number of buckets.
    pub fn num_buckets(&self) -> usize {
        self.lens.len()
    }

    /// The element count of each bucket, in issue order.
    pub fn bucket_lens(&self) -> &[usize] {
        &self.lens
    }

    /// The slot of parameter `param` (its index in visiting order).
    pub fn slot(&self, param: usize) -> Slot {
        self.slots[param]
    }

    /// The parameter indices of layer `layer`.
    pub fn layer_params(&self, layer: usize) -> Range<usize> {
        self.layer_params[layer].clone()
    }

    /// The buckets that are complete once layer `layer`'s backward has run (and every layer after
    /// it), and were not complete before.
    pub fn ready_after(&self, layer: usize) -> Range<usize> {
        self.ready_after[layer].clone()
    }

    /// The number of parameters planned.
    pub fn num_params(&self) -> usize {
        self.slots.len()
    }
}

/// Converts a bucket size in megabytes (10^6 bytes, as PyTorch's `bucket_cap_mb`) of f32 values to
/// elements, at least one.
pub fn cap_elements(megabytes: f64) -> usize {
    ((megabytes * 1e6 / 4.0) as usize).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stem with two parameters, a parameterless pooling layer, two blocks and a classifier.
    fn layers() -> Vec<Vec<usize>> {
        vec![vec![10, 2], vec![], vec![30, 2, 2], vec![5], vec![40, 4]]
    }

    /// Every parameter lies in exactly one bucket, its slots tile each bucket without gap or
    /// overlap, and its bucket is not ready before its layer ran.
    fn check_consistent(plan: &BucketPlan, sizes: &[Vec<usize>]) {
        let mut covered: Vec<Vec<bool>> =
            plan.bucket_lens().iter().map(|&n| vec![false; n]).collect();
        for (layer, layer_sizes) in sizes.iter().enumerate() {
            let params = plan.layer_params(layer);
            assert_eq!(params.len(), layer_sizes.len());
            for (p, &len) in params.zip(layer_sizes) {
                let s = plan.slot(p);
                assert_eq!(s.len, len);
                for c in &mut covered[s.bucket][s.offset..s.offset + len] {
                    assert!(!*c, "overlap in bucket {}", s.bucket);
                    *c = true;
                }
                // Ready only once layer `layer` (and all later layers) ran.
                let ready_at = (0..sizes.len())
                    .find(|&l| plan.ready_after(l).contains(&s.bucket))
                    .expect("every bucket becomes ready");
                assert!(
                    ready_at <= layer,
                    "bucket {} ready before layer {layer}",
                    s.bucket
                );
            }
        }
        assert!(covered.iter().flatten().all(|&c| c), "a gap in a bucket");
        // Every bucket is ready exactly once, in issue order from the last layer to the first.
        let issued: Vec<usize> = (0..sizes.len())
            .rev()
            .flat_map(|l| plan.ready_after(l))
            .collect();
        assert_eq!(issued, (0..plan.num_buckets()).collect::<Vec<_>>());
    }

    #[test]
    fn one_large_bucket_holds_everything_in_reverse_layer_order() {
        let plan = BucketPlan::new(&layers(), usize::MAX);
        check_consistent(&plan, &layers());
        assert_eq!(plan.bucket_lens(), &[95]);
        // The classifier's weight comes first, the stem's last parameter last.
        assert_eq!(
            plan.slot(6),
            Slot {
                bucket: 0,
                offset: 0,
                len: 40
            }
        );
        assert_eq!(
            plan.slot(1),
            Slot {
                bucket: 0,
                offset: 93,
                len: 2
            }
        );
        assert_eq!(plan.ready_after(0), 0..1);
        assert!(plan.ready_after(4).is_empty());
    }

    #[test]
    fn buckets_close_at_the_cap_and_a_large_parameter_travels_alone() {
        let plan = BucketPlan::new(&layers(), 6);
        check_consistent(&plan, &layers());
        // fc.weight 40 alone; fc.bias 4 + block 5 = 9; block 30 alone; 2 + 2 + 10 = 14; 2.
        assert_eq!(plan.bucket_lens(), &[40, 9, 30, 14, 2]);
        assert_eq!(plan.ready_after(4), 0..1);
        assert_eq!(plan.ready_after(3), 1..2);
        assert_eq!(plan.ready_after(2), 2..3);
        assert!(
            plan.ready_after(1).is_empty(),
            "the pooling layer completes nothing"
        );
        assert_eq!(plan.ready_after(0), 3..5);
    }

    #[test]
    fn a_cap_of_one_element_gives_one_bucket_per_parameter() {
        let plan = BucketPlan::new(&layers(), 1);
        check_consistent(&plan, &layers());
        assert_eq!(plan.num_buckets(), plan.num_params());
    }

    #[test]
    fn megabytes_convert_to_f32_elements() {
        assert_eq!(cap_elements(25.0), 6_250_000);
        assert_eq!(cap_elements(0.001), 250);
        assert_eq!(cap_elements(0.0), 1);
    }
}
