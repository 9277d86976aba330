"""Sample-quality metrics.

FID, KID, Inception Score and precision/recall exactly as pytorch-fid, torch-fidelity or
clean-fid compute them (`Protocol`, ``protocol="torch-fidelity"`` etc.: resize, quantisation,
Inception weight file, statistics), with the tools' weight files read without torch; VGG-16
precision/recall as Kynkäänniemi et al.; reference statistics in sdekit's and the tools' file
formats; `evaluate` for all of it in one call. Without any pretrained network: MMD, sliced
Wasserstein, energy distance and a Fréchet distance on any feature function. Command line:
``python -m sdekit.metrics --help``.

scipy is imported only for the tools' matrix square root (``sqrtm``), so importing this is cheap.
"""

from ._evaluate import evaluate as evaluate
from ._extract import InceptionFeatures as InceptionFeatures
from ._extract import inception_features as inception_features
from ._extract import vgg16_features as vgg16_features
from ._features import AbstractStagedFunction as AbstractStagedFunction
from ._features import extract_features as extract_features
from ._features import read_images as read_images
from ._features import to_unit_range as to_unit_range
from ._inception import FID_WEIGHTS_NAME as FID_WEIGHTS_NAME
from ._inception import FID_WEIGHTS_URL as FID_WEIGHTS_URL
from ._inception import NVIDIA_WEIGHTS_NAME as NVIDIA_WEIGHTS_NAME
from ._inception import NVIDIA_WEIGHTS_URL as NVIDIA_WEIGHTS_URL
from ._inception import InceptionV3 as InceptionV3
from ._inception import default_weights_path as default_weights_path
from ._inception import inception_from_nvidia_state as inception_from_nvidia_state
from ._inception import inception_from_state_dict as inception_from_state_dict
from ._inception import inception_state_dict as inception_state_dict
from ._inception import load_inception as load_inception
from ._inception import nvidia_module_paths as nvidia_module_paths
from ._inception import torchscript_tensors as torchscript_tensors
from ._protocols import PROTOCOLS as PROTOCOLS
from ._protocols import ISRule as ISRule
from ._protocols import KIDRule as KIDRule
from ._protocols import Protocol as Protocol
from ._protocols import get_protocol as get_protocol
from ._reference import load_reference as load_reference
from ._reference import save_reference as save_reference
from ._resize import resize_images as resize_images
from ._resize import resize_matrix as resize_matrix
from ._stats import RankDeficientWarning as RankDeficientWarning
from ._stats import StreamingStats as StreamingStats
from ._stats import covariance_term as covariance_term
from ._stats import feature_statistics as feature_statistics
from ._stats import fid_from_features as fid_from_features
from ._stats import frechet_distance as frechet_distance
from ._stats import inception_score as inception_score
from ._stats import kernel_inception_distance as kernel_inception_distance
from ._stats import kid_clean_fid as kid_clean_fid
from ._stats import kid_torch_fidelity as kid_torch_fidelity
from ._stats import knn_radii as knn_radii
from ._stats import load_stats as load_stats
from ._stats import polynomial_mmd2 as polynomial_mmd2
from ._stats import precision_recall as precision_recall
from ._stats import save_stats as save_stats
from ._stats import trace_sqrt_product_lowrank as trace_sqrt_product_lowrank
from ._vgg import VGG16 as VGG16
from ._vgg import VGG16_WEIGHTS_NAME as VGG16_WEIGHTS_NAME
from ._vgg import VGG16Features as VGG16Features
from ._vgg import load_vgg16 as load_vgg16
from ._vgg import vgg16_from_state_dict as vgg16_from_state_dict
from ._weightless import energy_distance as energy_distance
from ._weightless import frechet_feature_distance as frechet_feature_distance
from ._weightless import median_bandwidth as median_bandwidth
from ._weightless import mmd as mmd
from ._weightless import sliced_wasserstein as sliced_wasserstein

__all__ = [
    "AbstractStagedFunction",
    "FID_WEIGHTS_NAME",
    "FID_WEIGHTS_URL",
    "ISRule",
    "InceptionFeatures",
    "InceptionV3",
    "KIDRule",
    "NVIDIA_WEIGHTS_NAME",
    "NVIDIA_WEIGHTS_URL",
    "PROTOCOLS",
    "Protocol",
    "RankDeficientWarning",
    "StreamingStats",
    "VGG16",
    "VGG16Features",
    "VGG16_WEIGHTS_NAME",
    "covariance_term",
    "default_weights_path",
    "energy_distance",
    "evaluate",
    "extract_features",
    "feature_statistics",
    "fid_from_features",
    "frechet_distance",
    "frechet_feature_distance",
    "get_protocol",
    "inception_features",
    "inception_from_nvidia_state",
    "inception_from_state_dict",
    "inception_score",
    "inception_state_dict",
    "kernel_inception_distance",
    "kid_clean_fid",
    "kid_torch_fidelity",
    "knn_radii",
    "load_inception",
    "load_reference",
    "load_stats",
    "load_vgg16",
    "median_bandwidth",
    "mmd",
    "nvidia_module_paths",
    "polynomial_mmd2",
    "precision_recall",
    "read_images",
    "resize_images",
    "resize_matrix",
    "save_reference",
    "save_stats",
    "sliced_wasserstein",
    "to_unit_range",
    "torchscript_tensors",
    "trace_sqrt_product_lowrank",
    "vgg16_features",
    "vgg16_from_state_dict",
]
