"""MA-52 data: lists and label hierarchy, video decoding, sampling, augmentation,
datasets and the prepared frame cache. Clips leave this package as float32
``(3, T, H, W)`` (batched ``(B, 3, T, H, W)``)."""

from piumr.data.dataset import VideoDataset, collate, worker_init
from piumr.data.ma52 import (
    ACTION_NAMES, ACTION_TO_BODY, BODY_NAMES, NUM_ACTIONS, NUM_BODIES, SPLITS, ClipRecord, DatasetError,
    Layout, Split, body_of, cross_subject_folds, find_layout, read_label_names, read_split,
)
from piumr.data.prepare import PreparedCache, PrepareReport, open_cache_if_any, prepare_dataset
from piumr.data.transforms import KINETICS_MEAN, KINETICS_STD, build_transform
from piumr.data.video import (
    VideoError, VideoInfo, probe, read_frames, segment_indices, uniform_indices,
)

__all__ = [
    "ACTION_NAMES", "ACTION_TO_BODY", "BODY_NAMES", "NUM_ACTIONS", "NUM_BODIES", "SPLITS",
    "ClipRecord", "DatasetError", "Layout", "Split", "body_of", "cross_subject_folds", "find_layout",
    "read_label_names", "read_split",
    "VideoError", "VideoInfo", "probe", "read_frames", "segment_indices", "uniform_indices",
    "KINETICS_MEAN", "KINETICS_STD", "build_transform",
    "VideoDataset", "collate", "worker_init",
    "PreparedCache", "PrepareReport", "open_cache_if_any", "prepare_dataset",
]
