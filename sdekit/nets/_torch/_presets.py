"""The released configurations of the originals, as plain data (no imports: the fixture tool
``tools/make_torch_fixtures.py`` reads this file in a torch-only environment).

``DEFAULTS[arch]`` lists every configuration key of an arch with its default; ``PRESETS[arch]``
maps a preset name to its overrides of the defaults.
"""

# score_sde's NCSN++ keys, named as sdekit's UNet arguments (score_sde / PSLD config names are
# the same except in_ch -> in_channels, out_ch -> out_channels).
_SCORE_SDE = dict(
    in_channels=6, out_channels=6, nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=4,
    attn_resolutions=(16,), image_size=32, dropout=0.1, resblock_type="biggan", fir=False,
    fir_kernel=(1, 3, 3, 1), skip_rescale=True, progressive="none", progressive_input="none",
    progressive_combine="sum", embedding_type="positional", fourier_scale=16.0, init_scale=0.0,
    resamp_with_conv=True,
)

_PSLD_SOTA = dict(fir=True, progressive_input="residual", embedding_type="fourier")

DEFAULTS = {
    # mandt-lab/PSLD main/configs/dataset/cifar10/cifar10_psld.yaml (model.score_fn)
    "psld_ncsnpp": dict(_SCORE_SDE),
    # louaaron/Reflected-Diffusion configs/model/ddpmpp.yaml + configs/data/cifar10.yaml, and
    # the sde block of configs/train.yaml (only the `sigmas` buffer depends on it)
    "reflected_ncsnpp": dict(
        _SCORE_SDE, in_channels=3, out_channels=3, num_res_blocks=8,
        progressive_input="residual", embedding_type="fourier", sigma_min=0.01, sigma_max=5.0,
        num_scales=1000,
    ),
    # tqch/v-diffusion-torch configs/defaults.json "model" block (+ train.py's out_channels and
    # num_classes, and a nominal image_size that places the attention levels)
    "vdpm_unet": dict(
        in_channels=3, out_channels=3, hid_channels=256, ch_multipliers=(1, 1, 1),
        num_res_blocks=3, apply_attn=(False, True, True), embedding_dim=None, drop_rate=0.2,
        head_dim=None, num_heads=1, num_classes=0, multitags=False, resample_with_res=True,
        use_xformers=False, image_size=32,
    ),
    # SpencerSzabados/Group-Diffusion model/utils/script_util.py create_model arguments, with
    # the values its launch commands (scripts/launch.sh, README) use for C4-MNIST
    "group_diffusion_unet": dict(
        image_size=28, num_channels=64, num_res_blocks=1, channel_mult=(1, 2, 4), g_equiv=False,
        g_input="Z2", g_output="Z2", self_cond=False, learn_sigma=False, class_cond=False,
        num_classes=1000, attention_resolutions=(32, 16, 8), num_heads=1, num_head_channels=32,
        num_heads_upsample=-1, use_scale_shift_norm=True, dropout=0.1, resblock_updown=True,
        # sdekit only (not a key of the original): reproduce the original's float16 attention
        # (its QKVAttentionLegacy casts qkv.half()); False computes attention in float32
        attention_float16=True,
    ),
}

PRESETS = {
    "psld_ncsnpp": {
        # scripts_psld/sota/uncond/cifar10 (97,627,910 parameters; Gamma 0.01 and 0.02)
        "cifar10": dict(_PSLD_SOTA, ch_mult=(2, 2, 2), num_res_blocks=8, dropout=0.15),
        # scripts_psld/sota/uncond/celeba64 (62,769,286 parameters)
        "celeba64": dict(_PSLD_SOTA, ch_mult=(1, 2, 2, 2), num_res_blocks=4, image_size=64),
        # scripts_psld/ablations/uncond/cifar10, PSLD (39,397,254 parameters)
        "cifar10_ablation": dict(num_res_blocks=2),
        # the same scripts, CLD (Gamma = 0, epsilon_m only: out_ch 3)
        "cifar10_ablation_cld": dict(num_res_blocks=2, out_channels=3),
        # the VP-SDE baseline of the ablation (in/out 3)
        "cifar10_vpsde": dict(num_res_blocks=2, in_channels=3, out_channels=3),
        # scripts_psld/ablations/uncond/celeba64 (CLD sampling script: out_ch 3)
        "celeba64_ablation": dict(ch_mult=(1, 1, 2, 2, 2), num_res_blocks=4, image_size=64,
                                  out_channels=3),
        # scripts_psld/ablations/uncond/afhqv2 (afhqv2128_psld.yaml; 65,816,582 parameters)
        "afhqv2_128": dict(ch_mult=(1, 2, 2, 2, 3), num_res_blocks=2, image_size=128,
                           dropout=0.2),
        # scripts_psld/sota/cond/afhqv2 inpainting (CLD, nf 160, attention at 8 and 16)
        "afhqv2_128_inpaint": dict(nf=160, ch_mult=(1, 2, 2, 3, 3), num_res_blocks=2,
                                   image_size=128, dropout=0.2, attn_resolutions=(8, 16),
                                   out_channels=3),
        # NOT a released run: the SOTA architecture (Fourier log-t embedding, FIR, residual
        # input pyramid) at fixture size, 8x8 images, for CPU smoke tests and examples --smoke
        "smoke": dict(_PSLD_SOTA, nf=4, ch_mult=(1, 2), num_res_blocks=1, image_size=8,
                      attn_resolutions=(4,), dropout=0.15),
    },
    "reflected_ncsnpp": {
        # configs/model/ddpmpp.yaml on configs/data/cifar10.yaml (107,587,075 parameters)
        "cifar10": {},
        # the same network on configs/data/imagenet32.yaml, sigma_min 1e-4 as in the README's
        # ImageNet-32 likelihood command
        "imagenet32": dict(sigma_min=1e-4),
    },
    "vdpm_unet": {
        # configs/cifar10_uncond.json: model_out_type x0, no classes
        "cifar10_uncond": {},
        # configs/cifar10_cond.json: model_out_type v, 10 classes + the null label 0 (CFG)
        "cifar10_cond": dict(num_classes=10),
    },
    "group_diffusion_unet": {
        # scripts/launch.sh, C4-MNIST "weight-tied model": Z2_K -> C4_K, class-conditional
        "mnist_c4_k": dict(g_equiv=True, g_input="Z2_K", g_output="C4_K", class_cond=True),
        # the same architecture with plain convolutions (the "reg model", --g_equiv False)
        "mnist_plain": dict(class_cond=True),
        # the README's LYSTO 64x64 command with the launch script's Z2_S -> D4_S layers,
        # self-conditioning and 3 organ classes in a 1000-row table
        "lysto64_d4_s": dict(image_size=64, channel_mult=(1, 2, 2, 2), g_equiv=True,
                             g_input="Z2_S", g_output="D4_S", self_cond=True, class_cond=True),
    },
}
