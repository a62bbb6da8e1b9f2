use crate::error::{Error, Result};

/// The presets: torchvision's ImageNet ResNets and He et al.'s CIFAR ResNets (section 4.2,
/// 6n+2 layers; resnet8 and resnet14 are the small members, for training in a tab).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    ResNet18,
    ResNet34,
    ResNet50,
    ResNet101,
    ResNet152,
    ResNet8,
    ResNet14,
    ResNet20,
    ResNet32,
    ResNet44,
    ResNet56,
    ResNet110,
}

/// How the network starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stem {
    /// 7x7/2 convolution then 3x3/2 max-pool (torchvision).
    ImageNet,
    /// 3x3/1 convolution, no pooling (He et al. on CIFAR-10).
    Cifar,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3x3 convolutions.
    Basic,
    /// 1x1, 3x3, 1x1 with 4x expansion; the stride sits on the 3x3 (torchvision's "v1.5").
    Bottleneck,
}

impl BlockKind {
    /// Output channels per unit of stage width.
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// The shortcut where a block changes resolution or width, or none at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortcut {
    /// Option A: subsample and pad the new channels with zeros; no parameters.
    ZeroPad,
    /// Option B: 1x1 strided convolution and BatchNorm (torchvision's `downsample`).
    Projection,
    /// No shortcut in any block: the plain twin (He et al.'s "plain" networks), whose blocks
    /// compute relu(F(x)) instead of relu(F(x) + x).
    None,
}

impl Shortcut {
    /// The name weight files and messages use.
    pub fn name(self) -> &'static str {
        match self {
            Shortcut::ZeroPad => "zero-pad",
            Shortcut::Projection => "projection",
            Shortcut::None => "none",
        }
    }

    pub fn parse(name: &str) -> Option<Shortcut> {
        [Shortcut::ZeroPad, Shortcut::Projection, Shortcut::None]
            .into_iter()
            .find(|shortcut| shortcut.name() == name)
    }
}

/// A network by the name users give it: a ResNet preset (`resnet20`) or its plain twin
/// (`plain20`), the same layers without shortcuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Preset {
    pub arch: Arch,
    pub plain: bool,
}

impl Preset {
    /// Every name `parse` takes: the ResNets, then their plain twins.
    pub const NAMES: [&'static str; 24] = [
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
        "resnet8",
        "resnet14",
        "resnet20",
        "resnet32",
        "resnet44",
        "resnet56",
        "resnet110",
        "plain18",
        "plain34",
        "plain50",
        "plain101",
        "plain152",
        "plain8",
        "plain14",
        "plain20",
        "plain32",
        "plain44",
        "plain56",
        "plain110",
    ];

    pub fn resnet(arch: Arch) -> Self {
        Self { arch, plain: false }
    }

    pub fn parse(name: &str) -> Result<Preset> {
        let wanted = name.trim().to_ascii_lowercase().replace(['-', '_'], "");
        let unknown = || Error::UnknownArch {
            name: name.to_string(),
            known: &Self::NAMES,
        };
        match wanted.strip_prefix("plain") {
            Some(depth) => Arch::parse(&format!("resnet{depth}"))
                .map(|arch| Preset { arch, plain: true })
                .map_err(|_| unknown()),
            None => Arch::parse(&wanted)
                .map(Preset::resnet)
                .map_err(|_| unknown()),
        }
    }

    /// The configuration with the preset's usual shortcut, or none for a plain twin.
    pub fn config(self, num_classes: usize, in_channels: usize) -> ResNetConfig {
        let config = ResNetConfig::new(self.arch, num_classes, in_channels);
        if self.plain {
            config.with_shortcut(Shortcut::None)
        } else {
            config
        }
    }

    /// How many weight layers (convolutions and the classifier) a signal crosses on the
    /// main path: 20 for resnet20 and plain20.
    pub fn depth(self) -> usize {
        let per_block = match self.arch.block_kind() {
            BlockKind::Basic => 2,
            BlockKind::Bottleneck => 3,
        };
        2 + per_block * self.arch.stage_depths().iter().sum::<usize>()
    }
}

impl std::str::FromStr for Preset {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        Self::parse(name)
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.arch.name().strip_prefix("resnet") {
            Some(depth) if self.plain => write!(f, "plain{depth}"),
            _ => f.write_str(self.arch.name()),
        }
    }
}

impl std::str::FromStr for Arch {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        Self::parse(name)
    }
}

impl Arch {
    pub const ALL: [Arch; 12] = [
        Arch::ResNet18,
        Arch::ResNet34,
        Arch::ResNet50,
        Arch::ResNet101,
        Arch::ResNet152,
        Arch::ResNet8,
        Arch::ResNet14,
        Arch::ResNet20,
        Arch::ResNet32,
        Arch::ResNet44,
        Arch::ResNet56,
        Arch::ResNet110,
    ];
    pub const NAMES: [&'static str; 12] = [
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
        "resnet8",
        "resnet14",
        "resnet20",
        "resnet32",
        "resnet44",
        "resnet56",
        "resnet110",
    ];

    pub fn name(self) -> &'static str {
        let index = Self::ALL.iter().position(|arch| *arch == self);
        Self::NAMES[index.expect("every Arch is in ALL")]
    }

    pub fn parse(name: &str) -> Result<Arch> {
        let wanted = name.trim().to_ascii_lowercase().replace(['-', '_'], "");
        Self::NAMES
            .iter()
            .position(|candidate| *candidate == wanted)
            .map(|index| Self::ALL[index])
            .ok_or_else(|| Error::UnknownArch {
                name: name.to_string(),
                known: &Self::NAMES,
            })
    }

    pub fn stem(self) -> Stem {
        match self {
            Arch::ResNet18
            | Arch::ResNet34
            | Arch::ResNet50
            | Arch::ResNet101
            | Arch::ResNet152 => Stem::ImageNet,
            _ => Stem::Cifar,
        }
    }

    pub fn block_kind(self) -> BlockKind {
        match self {
            Arch::ResNet50 | Arch::ResNet101 | Arch::ResNet152 => BlockKind::Bottleneck,
            _ => BlockKind::Basic,
        }
    }

    /// Blocks in each stage.
    pub fn stage_depths(self) -> &'static [usize] {
        match self {
            Arch::ResNet18 => &[2, 2, 2, 2],
            Arch::ResNet34 | Arch::ResNet50 => &[3, 4, 6, 3],
            Arch::ResNet101 => &[3, 4, 23, 3],
            Arch::ResNet152 => &[3, 8, 36, 3],
            Arch::ResNet8 => &[1, 1, 1],
            Arch::ResNet14 => &[2, 2, 2],
            Arch::ResNet20 => &[3, 3, 3],
            Arch::ResNet32 => &[5, 5, 5],
            Arch::ResNet44 => &[7, 7, 7],
            Arch::ResNet56 => &[9, 9, 9],
            Arch::ResNet110 => &[18, 18, 18],
        }
    }

    /// Width (before bottleneck expansion) of each stage.
    pub fn stage_widths(self) -> &'static [usize] {
        match self.stem() {
            Stem::ImageNet => &[64, 128, 256, 512],
            Stem::Cifar => &[16, 32, 64],
        }
    }

    /// The preset with this stem, block kind and stage depths, if any.
    pub fn from_layout(stem: Stem, block: BlockKind, depths: &[usize]) -> Option<Arch> {
        Self::ALL.into_iter().find(|arch| {
            arch.stem() == stem && arch.block_kind() == block && arch.stage_depths() == depths
        })
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything needed to build a ResNet.
#[derive(Debug, Clone, PartialEq)]
pub struct ResNetConfig {
    pub arch: Arch,
    pub num_classes: usize,
    pub in_channels: usize,
    /// Option A for the CIFAR family by default, as in the paper; the ImageNet family always
    /// uses option B, as torchvision does.
    pub shortcut: Shortcut,
}

impl ResNetConfig {
    /// The preset with its usual shortcut: ImageNet family B, CIFAR family A.
    pub fn new(arch: Arch, num_classes: usize, in_channels: usize) -> Self {
        let shortcut = match arch.stem() {
            Stem::ImageNet => Shortcut::Projection,
            Stem::Cifar => Shortcut::ZeroPad,
        };
        Self {
            arch,
            num_classes,
            in_channels,
            shortcut,
        }
    }

    pub fn with_shortcut(mut self, shortcut: Shortcut) -> Self {
        self.shortcut = shortcut;
        self
    }

    /// The name users know it by: `resnet20`, or `plain20` without shortcuts.
    pub fn preset(&self) -> Preset {
        Preset {
            arch: self.arch,
            plain: self.shortcut == Shortcut::None,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.num_classes == 0 {
            return Err(Error::InvalidConfig(
                "the class count must be at least 1".into(),
            ));
        }
        if self.in_channels == 0 {
            return Err(Error::InvalidConfig(
                "the input channel count must be at least 1".into(),
            ));
        }
        if self.arch.stem() == Stem::ImageNet && self.shortcut == Shortcut::ZeroPad {
            return Err(Error::InvalidConfig(format!(
                "{} uses projection shortcuts (option B) only",
                self.arch
            )));
        }
        Ok(())
    }

    /// How many times the network halves a picture's side: the ImageNet stem and its
    /// max-pool, and every stage after the first.
    pub fn halvings(&self) -> u32 {
        let stages = self.arch.stage_depths().len() as u32 - 1;
        match self.arch.stem() {
            Stem::ImageNet => 2 + stages,
            Stem::Cifar => stages,
        }
    }

    /// Refuses a fresh network whose last stage would see fewer than 2x2 pixels of a
    /// `side`-pixel picture: it would train on next to nothing.
    pub fn check_input_side(&self, side: usize) -> Result<()> {
        let halvings = self.halvings();
        let last = (0..halvings).fold(side, |side, _| side.div_ceil(2));
        if last >= 2 {
            return Ok(());
        }
        Err(Error::InvalidConfig(format!(
            "{} is too deep for {side} px pictures: it halves them {halvings} times, so its last \
             stage would see {last}x{last} pixels. Use pictures larger than {} px, or a network \
             of the CIFAR family (8 to 110 layers), made for small pictures",
            self.preset(),
            1usize << halvings
        )))
    }

    /// Channels out of the last stage, what the classifier sees.
    pub fn feature_channels(&self) -> usize {
        let width = *self
            .arch
            .stage_widths()
            .last()
            .expect("every preset has stages");
        match self.arch.block_kind() {
            BlockKind::Basic => width,
            BlockKind::Bottleneck => width * 4,
        }
    }
}
