"""2D segmentation: crops that keep image and mask together, sliding-window evaluation,
U-Net / DeepLabV3 and every 2D algorithm end to end on a tiny rendered dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from da.config import load_config
from da.data.segmentation2d import SegmentationImages
from da.tasks.segmentation2d import image_logits


def test_crops_move_image_and_mask_together_and_resume_exactly():
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 3, (3, 48, 40)).astype(np.uint8)
    images = np.repeat(masks[:, None] * 80, 3, axis=1).astype(np.uint8)  # the image encodes its mask
    ds = SegmentationImages(images, masks, crop=32, augment=True)
    batch = ds.__getitems__([(0, 5), (2, 5), (1, 5)])
    assert batch["image"].shape == (3, 3, 32, 32) and batch["label"].shape == (3, 32, 32)
    raw = (batch["image"][:, 0] * 0.229 + 0.485) * 255  # undo the normalisation (red channel)
    assert torch.allclose(raw, batch["label"].float() * 80, atol=1e-3)  # crop and flip agree
    again = ds.__getitems__([(0, 5), (2, 5), (1, 5)])
    assert torch.equal(again["label"], batch["label"])  # the key's seed fixes the crop
    other = ds.__getitems__([(0, 6), (2, 6), (1, 6)])
    assert not torch.equal(other["label"], batch["label"])
    with pytest.raises(ValueError, match="do not match"):
        SegmentationImages(images, masks[:, :10], crop=32, augment=True)


def test_color_jitter_changes_the_image_only_and_is_seeded_by_the_key():
    rng = np.random.default_rng(1)
    masks = rng.integers(0, 3, (4, 48, 40)).astype(np.uint8)
    images = np.full((4, 3, 48, 40), 120, np.uint8)
    images[:, 1] = 60  # a coloured, flat image: any change is the jitter's
    keys = [(i, 7) for i in range(4)]
    jit_ds = SegmentationImages(images, masks, crop=32, augment=True, color_jitter=0.5)
    jit = jit_ds.__getitems__(keys)
    for key in keys:  # the jitter draws after a crop's position: a crop alone is placed as without
        assert torch.equal(jit_ds.__getitems__([key])["label"],
                           SegmentationImages(images, masks, crop=32, augment=True).__getitems__([key])["label"])
    raw = (jit["image"] * torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
           + torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) * 255
    assert raw.min() >= -1e-3 and raw.max() <= 255 + 1e-3
    per_crop = raw.mean(dim=(2, 3))  # (4 crops, 3 channels): flat input, so one value each
    assert (per_crop - torch.tensor([120.0, 60.0, 120.0])).abs().max() > 5  # it changed them
    assert (per_crop[:, 0] - per_crop[:, 2]).abs().max() > 1  # channels differently (colour)
    assert per_crop.std(dim=0).min() > 1  # and each crop differently
    assert torch.equal(jit_ds.__getitems__(keys)["image"], jit["image"])  # exact resume
    off = SegmentationImages(images, masks, crop=32, augment=False, color_jitter=0.5)
    raw_off = off.__getitems__(keys)["image"][:, 0] * 0.229 + 0.485
    assert torch.allclose(raw_off * 255, torch.full_like(raw_off, 120.0), atol=1e-3)  # eval: never
    with pytest.raises(ValueError, match="color_jitter"):
        SegmentationImages(images, masks, crop=32, augment=True, color_jitter=-1)


def test_warped_crop_convention_identity_and_a_quarter_turn():
    from da.data.segmentation2d import warped_crop

    image = torch.zeros(3, 40, 48)
    image[:, :, :] = torch.arange(48.0).view(1, 1, 48) + 100 * torch.arange(40.0).view(1, 40, 1)
    mask = (torch.arange(40).view(40, 1) // 5 % 3).expand(40, 48).clone()  # horizontal stripes
    x, y = warped_crop(image, mask, (19.5, 23.5), 16, torch.eye(2))
    assert torch.allclose(x, image[:, 12:28, 16:32], atol=1e-3) and torch.equal(y, mask[12:28, 16:32])
    quarter = torch.tensor([[0.0, -1.0], [1.0, 0.0]])  # output (row, col) -> source (-col, row)
    x, y = warped_crop(image, mask, (19.5, 23.5), 16, quarter)
    assert (y == y[:1]).all() and not (y == y[:, :1]).all()  # stripes now run top to bottom
    assert torch.allclose(x[0], image[0, 12:28, 16:32].T.flip(1), atol=1e-3)


def test_geometric_augmentation_moves_image_and_mask_together_and_keeps_the_stream():
    from da.data.segmentation2d import random_affine

    masks = np.zeros((3, 96, 96), np.uint8)
    for k, (lo, hi) in ((1, (20, 34)), (2, (60, 70))):
        masks[:, lo:hi, :] = k  # two thick horizontal bars
        masks[:, :, lo + 5:hi + 5] = k  # and two vertical ones
    images = np.repeat(masks[:, None] * 100, 3, axis=1).astype(np.uint8)  # the image encodes its mask
    keys = [(i % 3, 11 + i) for i in range(12)]
    geo = SegmentationImages(images, masks, crop=64, augment=True, geometric=1.0)
    batch = geo.__getitems__(keys)
    raw = (batch["image"][:, 0] * 0.229 + 0.485) * 255
    agree = ((raw - batch["label"].float() * 100).abs() < 50).float().mean().item()
    assert agree > 0.9, agree  # 0.98 here (bilinear blurs edges only); against the unwarped mask: 0.37
    plain = SegmentationImages(images, masks, crop=64, augment=True).__getitems__(keys)["label"]
    changed = (plain != batch["label"]).float().mean().item()
    assert changed > 0.2, changed  # 0.62 here: the views really changed
    assert torch.equal(geo.__getitems__(keys)["label"], batch["label"])  # exact resume
    off = SegmentationImages(images, masks, crop=64, augment=True, geometric=0.0).__getitems__(keys)
    assert torch.equal(off["label"], plain)  # off: the stream runs without it are unchanged
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(random_affine(0.0, g), torch.eye(2))
    dets = torch.stack([random_affine(0.5, g).det().abs() for _ in range(300)])
    # |det| = 1 / (zoom^2 squash): zoom in exp(+-0.3), squash in [0.65, 1]
    assert dets.min() > np.exp(-0.6) - 1e-4 and dets.max() < np.exp(0.6) / 0.65 + 1e-4
    assert dets.max() / dets.min() > 2.0  # and the draws do spread over that range
    with pytest.raises(ValueError, match="geometric"):
        SegmentationImages(images, masks, crop=64, augment=True, geometric=1.5)


def test_focus_crops_hold_the_rare_class_and_uniform_crops_rarely_do():
    masks = np.zeros((4, 128, 128), np.uint8)
    masks[:, 40:80, :] = 1  # a thick main bar
    masks[:, 100, 7] = 2  # one tie pixel per image, off-centre
    images = np.zeros((4, 3, 128, 128), np.uint8)
    keys = [(i % 4, 3) for i in range(64)]
    focused = SegmentationImages(images, masks, crop=32, augment=True, focus_share=1.0).__getitems__(keys)
    assert all((y == 2).any() for y in focused["label"])  # every crop holds the tie
    uniform = SegmentationImages(images, masks, crop=32, augment=True).__getitems__(keys)
    assert sum(bool((y == 2).any()) for y in uniform["label"]) < 32  # ~6% expected: a wide margin
    half = SegmentationImages(images, masks, crop=32, augment=True, focus_share=0.5).__getitems__(keys)
    assert 8 < sum(bool((y == 2).any()) for y in half["label"]) < 56
    assert torch.equal(half["label"], SegmentationImages(images, masks, crop=32, augment=True,
                                                         focus_share=0.5).__getitems__(keys)["label"])
    with pytest.raises(ValueError, match="focus_share"):
        SegmentationImages(images, masks, crop=32, augment=True, focus_share=1.5)


def test_sliding_windows_cover_the_whole_image_exactly_once_per_window():
    class Identity(torch.nn.Module):  # "logits" = the normalised red channel, 3 times
        def features(self, batch):
            return batch["image"][:, :1].repeat(1, 3, 1, 1)

        def head(self, features):
            return features

    images = np.random.default_rng(1).integers(0, 255, (1, 3, 70, 90)).astype(np.uint8)
    ds = SegmentationImages(images, np.zeros((1, 70, 90), np.uint8), crop=32, augment=False)
    logits = image_logits(Identity(), ds, 0, torch.device("cpu"))
    expect = (torch.as_tensor(images[0, 0]).float() / 255 - 0.485) / 0.229
    assert logits.shape == (3, 70, 90) and torch.allclose(logits[0], expect, atol=1e-5)  # averaging is exact


@pytest.mark.parametrize("model,algo", [
    ("unet", ["algorithm.name=source_only"]),
    ("unet", ["algorithm.name=dann", "algorithm.domain_level=dense", "algorithm.domain_rows=256",
              "data.geometric=0.5", "data.color_jitter=0.5",
              "algorithm.disc_hidden=[32]"]),
    ("unet", ["algorithm.name=dann_stages", "algorithm.output_weight=0.5"]),
    ("unet", ["algorithm.name=adabn"]),
    ("unet", ["algorithm.name=prior_em", "algorithm.samples_per_batch=256", "algorithm.capacity=1024",
              "algorithm.calibrate=true"]),
    ("unet", ["algorithm.name=self_training"]),
    ("deeplabv3", ["algorithm.name=source_only"])])
def test_tiny_end_to_end(tmp_path, tiny2d, model, algo):
    from da.run_log import read_results
    from da.train import train

    over = [*tiny2d, f"model.name={model}", *algo, "train.batch_size=2", "train.steps=2", "train.eval_every=2",
            "train.log_every=1", "train.checkpoint_every=2", "train.progress_bar=false",
            "train.embedding_samples=0", "optim.name=adamw", "optim.lr=0.001", f"run_dir={tmp_path / 'run'}"]
    run = train(load_config(None, over))
    final = read_results(run)[-1]
    assert final["step"] == 2 and 0 <= final["target_miou"] <= 1 and "target_iou_2" in final
    assert (run / "done").exists()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb"), size_guidance={"images": 0}).Reload()
    images = events.Tags()["images"]
    assert "target_test/image_0" in images  # input | truth | prediction at each evaluation
    shot = events.Images("target_test/image_0")[-1]
    assert (shot.width, shot.height) == (3 * 96, 96)


def test_stage_discriminators_reach_the_encoder(tiny2d):
    from da.data import build_data
    from da.runs import build_run

    cfg = load_config(None, [*tiny2d, "model.name=unet", "algorithm.name=dann_stages", "algorithm.stages=[2,4]",
                             "train.batch_size=2"])
    run = build_run(cfg, torch.device("cpu"))
    data = build_data(cfg.data)
    out = run.algorithm.losses(data.source_train.__getitems__([(0, 1), (1, 1)]),
                               data.target_train.__getitems__([(0, 2), (1, 2)]), progress=0.5)
    assert set(k for k in out if k.startswith("domain_stage")) == {"domain_stage2", "domain_stage4"}
    out["domain"].backward()
    enc = run.algorithm.feature_extractor.encoder
    assert enc.stages[2][0].conv1.weight.grad.abs().sum() > 0  # the reversed gradient reaches layer2
    with pytest.raises(ValueError, match="needs a feature extractor with stage_features"):
        build_run(load_config(None, [*tiny2d, "model.name=deeplabv3", "algorithm.name=dann_stages"]),
                  torch.device("cpu"))


def test_seg_files_dataset_reads_mask_folders_and_coco(tmp_path):
    import json

    from PIL import Image

    from da.data import build_data

    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        d = tmp_path / "src" / split
        (d / "images").mkdir(parents=True)
        (d / "masks").mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(d / "images" / f"{i}.jpg")
            Image.fromarray(rng.choice([0, 10, 20], (40, 50)).astype(np.uint8)).save(d / "masks" / f"{i}.png")
    d = tmp_path / "tgt"
    for split in ("train", "test"):
        (d / split / "images").mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(d / split / "images" / "a.png")
    (d / "test" / "annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 30, "height": 30}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "segmentation": [[0, 0, 20, 0, 20, 20, 0, 20]]}],
        "categories": [{"id": 3, "name": "rebar"}]}))
    base = ["data.name=seg_files", f"data.path={tmp_path / 'src'}", "data.size=[64,64]", "data.crop=32"]
    data = build_data(load_config(None, [*base, "data.classes={0: 0, 10: 1, 20: 2}"]).data)
    assert len(data.source_train) == 2 and data.target_test.masks.shape == (2, 64, 64)
    assert set(np.unique(data.source_train.masks.numpy())) <= {0, 1, 2}
    with pytest.raises(Exception, match=r"unknown category id\(s\) \[20\]"):
        build_data(load_config(None, [*base, "data.classes={0: 0, 10: 1}"]).data)
    # the COCO target's test split (polygons) with a folder source
    (d / "test" / "masks").mkdir()
    coco_src = tmp_path / "coco"
    for split in ("train", "val", "test"):
        (coco_src / split / "images").mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(coco_src / split / "images" / "a.png")
        (coco_src / split / "annotations.json").write_text((d / "test" / "annotations.json").read_text())
    coco = build_data(load_config(None, ["data.name=seg_files", f"data.path={coco_src}", "data.coco=true",
                                         "data.classes={rebar: 1}", "data.size=[32,32]", "data.crop=32",
                                         f"data.target_path={d}"]).data)
    assert coco.target_train.masks is None and len(coco.target_train) == 1
    assert (coco.source_train.masks[0, :16, :16] == 1).all() and coco.source_train.masks[0, 31, 31] == 0


def test_unet_draws_a_one_pixel_line_at_full_resolution():
    """A 1 px wide bar (what a tie is at 512 px) must be drawable: the decoder reaches H
    (an H/4 decoder with a bilinear x4 step smears it). Overfitting two images for 60
    steps reaches line IoU 1.0 here; the same run with the decoder cut at H/4 + bilinear
    x4 (the first version) reaches 0.5: the bar, 0.75, sits between with a wide margin."""
    from da.data import DomainData
    from da.models.unet import UNetConfig, build_unet

    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64) * 0.3
    y = torch.zeros(2, 64, 64, dtype=torch.long)
    for b, col in enumerate((21, 38)):
        x[b, :, :, col] += 1.5
        y[b, :, col] = 1
    shape = DomainData(None, None, None, None, 2, "image", (3, 64, 64))
    parts = build_unet(UNetConfig(), shape)
    params = [*parts.feature_extractor.parameters(), *parts.task_head.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    for _ in range(60):
        logits = parts.task_head(parts.feature_extractor({"image": x}))
        loss = torch.nn.functional.cross_entropy(logits, y, weight=torch.tensor([1.0, 10.0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    parts.feature_extractor.eval()
    with torch.no_grad():
        pred = parts.task_head(parts.feature_extractor({"image": x})).argmax(1)
    inter = ((pred == 1) & (y == 1)).sum().item()
    union = ((pred == 1) | (y == 1)).sum().item()
    assert inter / union > 0.75, f"line IoU {inter / union:.3f}"


def test_unet_encoder_starts_from_an_exported_transfer_backbone(tmp_path):
    """The transfer issue's `da export-backbone` file initialises the U-Net's encoder,
    tensor for tensor; a backbone of another arch is refused naming the file."""
    from torch import nn

    from da.data import DomainData
    from da.models.torchvision_nets import TorchvisionConfig, build_torchvision, export_backbone
    from da.models.unet import UNetConfig, build_unet

    shape = DomainData(None, None, None, None, 3, "image", (3, 64, 64))
    torch.manual_seed(3)
    pretrained = build_torchvision(TorchvisionConfig(arch="resnet18", strategy="scratch"), shape)
    with torch.no_grad():
        for p in pretrained.feature_extractor.parameters():
            p.add_(0.01)  # unlike any fresh init
    out = export_backbone(nn.ModuleDict({"feature_extractor": pretrained.feature_extractor}),
                          TorchvisionConfig(arch="resnet18", strategy="scratch"), tmp_path / "backbone.pth")
    unet = build_unet(UNetConfig(weights=str(out), strategy="finetune_all"), shape)
    theirs = pretrained.feature_extractor.state_dict()
    mine = unet.feature_extractor.encoder.state_dict()
    assert set(mine) == set(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine)
    fresh = build_unet(UNetConfig(), shape).feature_extractor.encoder.state_dict()
    assert not torch.equal(fresh["stages.0.0.weight"], mine["stages.0.0.weight"])
    with pytest.raises(ValueError, match="backbone.pth: a resnet18 backbone, not resnet50"):
        build_unet(UNetConfig(arch="resnet50", weights=str(out), strategy="finetune_all"), shape)
