"""The reconstruction core, in the parts the four ``icnn_*`` engines are made of.

- :mod:`~icnn_torch.recon.param`: parametrisations (the pixels, or the generator input
  whose image is ``center_crop(G(z))``), their starts and bounds;
- :mod:`~icnn_torch.recon.transforms`: the per-step operations of the GD engines as a list
  of small hooks (jitter, regularisers, clipping, blur, bounds);
- :mod:`~icnn_torch.recon.losses` and :mod:`~icnn_torch.recon.objective`: the objective
  (per-layer losses; targets, layer weights and masks of a batch);
- :mod:`~icnn_torch.recon.gd`: the momentum gradient-descent loop;
- :mod:`~icnn_torch.recon.lbfgs`: the L-BFGS-B driver (scipy);
- :mod:`~icnn_torch.recon.progress`: the loss record, progress lines and bar;
- :mod:`~icnn_torch.recon.snapshots`: intermediate results (``save_intermediate``);
- :mod:`~icnn_torch.recon.problem`: what an engine derives from its arguments;
- :mod:`~icnn_torch.recon.engines`: the registry of the four engines (what each needs and
  takes; no torch).

The engines themselves (:mod:`icnn_torch.icnn_gd`, ...) are short adapters with the
original's signatures.
"""
