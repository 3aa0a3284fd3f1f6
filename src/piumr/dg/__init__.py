"""Domain-generalisation baselines with persons (participants) as the domains; none is part of PIUmr.

- ``groupdro``: ``GroupDROLoss``, online group DRO over persons (Sagawa et al., ICLR 2020, Algorithm 1).
- ``vrex``: ``VRExLoss``, risk variance across persons (V-REx, Krueger et al., ICML 2021, eq. 8).
- ``coral``: ``CORALLoss``, CE + mean / covariance alignment across persons (Deep CORAL, Sun & Saenko 2016).
- ``mixstyle``: ``MixStyle``, feature-statistics mixing between clips (Zhou et al., ICLR 2021, eq. 4-5);
  ``PIUmrNet`` applies it when ``ModelConfig.mixstyle.enabled``.
- ``common``: what the three losses share (reading ``TrainConfig.loss_options``, per-person risks).

The losses are registered in ``piumr.losses.LOSSES`` (``TrainConfig.loss`` = "groupdro", "vrex", "coral"); their
options come from ``TrainConfig.loss_options``.
"""
