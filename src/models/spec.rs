//! Model names and what they stand for.
//!
//! - CIFAR nets (paper, sec. 4.2): `resnetD` / `plainD` for depth `D = 6n + 2` (resnet8, resnet20,
//!   resnet32, resnet44, resnet56, resnet110, resnet1202, ...): a 3x3 conv of 16 filters, three stages
//!   of `n` basic blocks with 16/32/64 filters, global average pooling, a fully connected layer.
//! - ImageNet nets (paper, Table 1): `resnet18/34/50/101/152`, `plain18/34`.
//!
//! Depths 50 and 152 are also `6n + 2`; the bare name means the ImageNet net, and `cifar-resnet50`
//! (any depth, likewise `cifar-plainD`) asks for the CIFAR one.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::nn::{BottleneckStride, ShortcutOption};

/// Which published definition of the ImageNet bottleneck nets (ResNet-50/101/152) to build. Both have
/// the same parameter names and shapes, so a state dict of one loads into the other without a word and
/// then computes a different function: the variant has to be chosen, and is recorded in checkpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// The paper's released models: a downsampling bottleneck has its stride on the first 1x1.
    #[default]
    Paper,
    /// torchvision's ("ResNet v1.5"): the stride is on the 3x3 convolution.
    Torchvision,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Paper => "paper",
            Variant::Torchvision => "torchvision",
        }
    }

    fn bottleneck_stride(self) -> BottleneckStride {
        match self {
            Variant::Paper => BottleneckStride::OnReduce,
            Variant::Torchvision => BottleneckStride::On3x3,
        }
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Variant {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "paper" => Ok(Variant::Paper),
            "torchvision" => Ok(Variant::Torchvision),
            other => Err(Error::Config(format!(
                "--variant {other}: expected paper or torchvision"
            ))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// 32x32 inputs, three stages of basic blocks.
    Cifar,
    /// 224x224 inputs, 7x7 stem, max pool, four stages.
    ImageNet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    Basic,
    Bottleneck,
}

/// Everything needed to build a network.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// The name it was built from, such as `resnet20`.
    pub name: String,
    pub family: Family,
    pub depth: usize,
    /// Residual (with shortcuts) or plain.
    pub residual: bool,
    pub block: BlockKind,
    /// Blocks per stage.
    pub stage_blocks: Vec<usize>,
    /// Output channels of each stage.
    pub stage_channels: Vec<usize>,
    pub shortcut: ShortcutOption,
    pub bottleneck_stride: BottleneckStride,
    pub num_classes: usize,
}

const IMAGENET_DEPTHS: [(usize, BlockKind, [usize; 4]); 5] = [
    (18, BlockKind::Basic, [2, 2, 2, 2]),
    (34, BlockKind::Basic, [3, 4, 6, 3]),
    (50, BlockKind::Bottleneck, [3, 4, 6, 3]),
    (101, BlockKind::Bottleneck, [3, 4, 23, 3]),
    (152, BlockKind::Bottleneck, [3, 8, 36, 3]),
];

fn model_error(name: &str, message: impl Into<String>) -> Error {
    Error::Model {
        model: name.to_string(),
        message: message.into(),
    }
}

impl ModelConfig {
    /// Parses a model name; the shortcut option defaults to A for CIFAR nets and B for ImageNet nets.
    pub fn from_name(name: &str, num_classes: usize) -> Result<Self> {
        const KNOWN: &str =
            "expected resnetD or plainD with D = 6n+2 (CIFAR: resnet20, resnet56, ...), \
                             resnet18/34/50/101/152, plain18/34, or cifar-resnetD / cifar-plainD";
        if num_classes == 0 {
            return Err(model_error(
                name,
                "the number of classes must be at least 1",
            ));
        }
        let (cifar_forced, rest) = match name.strip_prefix("cifar-") {
            Some(rest) => (true, rest),
            None => (false, name),
        };
        let (residual, digits) = if let Some(d) = rest.strip_prefix("resnet") {
            (true, d)
        } else if let Some(d) = rest.strip_prefix("plain") {
            (false, d)
        } else {
            return Err(model_error(name, format!("unknown model; {KNOWN}")));
        };
        let depth: usize = digits
            .parse()
            .map_err(|_| model_error(name, format!("unknown model; {KNOWN}")))?;
        let imagenet = IMAGENET_DEPTHS.iter().find(|(d, _, _)| *d == depth);
        match imagenet {
            Some(&(_, block, blocks)) if !cifar_forced => {
                if !residual && block == BlockKind::Bottleneck {
                    return Err(model_error(
                        name,
                        "the paper has plain ImageNet nets of depth 18 and 34 only",
                    ));
                }
                let channels = match block {
                    BlockKind::Basic => vec![64, 128, 256, 512],
                    BlockKind::Bottleneck => vec![256, 512, 1024, 2048],
                };
                Ok(ModelConfig {
                    name: name.to_string(),
                    family: Family::ImageNet,
                    depth,
                    residual,
                    block,
                    stage_blocks: blocks.to_vec(),
                    stage_channels: channels,
                    shortcut: ShortcutOption::B,
                    bottleneck_stride: BottleneckStride::OnReduce,
                    num_classes,
                })
            }
            _ => {
                if depth < 8 || (depth - 2) % 6 != 0 {
                    return Err(model_error(
                        name,
                        format!("CIFAR depth must be 6n+2 with n >= 1; {KNOWN}"),
                    ));
                }
                let n = (depth - 2) / 6;
                Ok(ModelConfig {
                    name: name.to_string(),
                    family: Family::Cifar,
                    depth,
                    residual,
                    block: BlockKind::Basic,
                    stage_blocks: vec![n; 3],
                    stage_channels: vec![16, 32, 64],
                    shortcut: ShortcutOption::A,
                    bottleneck_stride: BottleneckStride::OnReduce,
                    num_classes,
                })
            }
        }
    }

    /// The same network with another shortcut option.
    pub fn with_shortcut(mut self, option: ShortcutOption) -> Self {
        self.shortcut = option;
        self
    }

    /// The same network as `variant` defines it.
    ///
    /// `torchvision` is accepted for every residual ImageNet net: for ResNet-18/34 it changes nothing
    /// because torchvision's basic-block nets *are* the paper's (same strides, projection shortcuts),
    /// so a user loading torchvision's resnet18 with `--variant torchvision` is right to say so and
    /// should not be stopped. It is an error for the CIFAR nets and the plain nets, which torchvision
    /// does not define: there the flag can only be a mistake (a wrong model name, most likely).
    /// `paper` is the default and always accepted.
    pub fn with_variant(mut self, variant: Variant) -> Result<Self> {
        if variant == Variant::Torchvision && !(self.family == Family::ImageNet && self.residual) {
            return Err(Error::Config(format!(
                "--variant torchvision: torchvision has no {} (only resnet18/34/50/101/152)",
                self.name
            )));
        }
        self.bottleneck_stride = variant.bottleneck_stride();
        Ok(self)
    }

    /// The variant the network is built as.
    pub fn variant(&self) -> Variant {
        match self.bottleneck_stride {
            BottleneckStride::OnReduce => Variant::Paper,
            BottleneckStride::On3x3 => Variant::Torchvision,
        }
    }

    /// The name with its variant where the variant changes the function (`resnet50 (torchvision
    /// variant: stride on the 3x3 convolution)`), else the bare name.
    pub fn describe(&self) -> String {
        if self.block != BlockKind::Bottleneck {
            return self.name.clone();
        }
        let where_ = match self.bottleneck_stride {
            BottleneckStride::OnReduce => "first 1x1",
            BottleneckStride::On3x3 => "3x3",
        };
        format!(
            "{} ({} variant: downsampling stride on the {where_} convolution)",
            self.name,
            self.variant()
        )
    }

    /// Channels of the stem convolution.
    pub fn stem_channels(&self) -> usize {
        match self.family {
            Family::Cifar => 16,
            Family::ImageNet => 64,
        }
    }

    /// Input image side the family is designed for.
    pub fn image_size(&self) -> usize {
        match self.family {
            Family::Cifar => 32,
            Family::ImageNet => 224,
        }
    }
}
