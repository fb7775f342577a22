"""Write a synthetic dataset in the exact FingerTip-20K on-disk layout, with per-user habits.

Usage: ``python -m data_prep synth --out RAW [--users 12] [--episodes 50] [--seed 0] [--scale 0.25]``

Each app screen offers several elements that satisfy the same intent (a search icon and a
search tab, say). Every user has a fixed preferred element per intent (the obvious one for
about 40% of user-intent pairs, another one otherwise), and a preferred
button in confirmation dialogs: the habits that personalization can learn and a global model,
trained on other users, cannot know. The test users (the first ``test_users``) prefer pairwise
different elements for every intent and dialog (up to 3 of them) on the same phone, so the screens are
the same and a model trained on their pooled data without knowing who asks cannot satisfy them all: the
case a user token exists for. Their elements come from candidates 0-2, which sit in three distinct slots
(candidate 3 shares candidate 0's slot, so two users preferring 0 and 3 would tap the same spot and a
pooled model would serve both: a ceiling of ~62 % instead of ~25 %). The instruction never names the element. Every action type
appears; some users are nested one level deeper (<uid>/<uid>/<episode>/); a few deliberate
defects (malformed line, missing screenshot, click off screen, ...) exercise the report.
Deterministic for a given seed.
"""
from __future__ import annotations

import io
import json
import random
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image, ImageDraw

# (package, [(intent, [candidate elements])]); element i of intent j of app a sits in slot SLOTS[(j + 2i + a) % 6]
APPS = [
    {"package": "com.tencent.mm", "intents": [
        ("给妈妈发消息说我晚点回家", ["聊天列表第一项", "通讯录图标", "搜索放大镜", "加号按钮"]),
        ("扫一扫付款", ["加号按钮", "扫一扫快捷方式", "发现标签", "我的标签"]),
    ]},
    {"package": "com.taobao.taobao", "intents": [
        ("搜索一款蓝牙耳机", ["顶部搜索框", "拍照搜索", "分类标签", "消息图标"]),
        ("open my orders", ["我的淘宝", "待收货", "全部订单", "消息图标"]),
    ]},
    {"package": "com.android.settings", "intents": [
        ("turn on wifi", ["WLAN 开关", "WLAN 菜单", "搜索设置", "快捷面板"]),
    ]},
]
SLOTS = [(200, 160), (780, 160), (500, 420), (220, 680), (780, 700), (500, 900)]  # 0-1000 grid
DIALOG_BUTTONS = [("确定", (700, 620)), ("取消", (300, 620)), ("不再提示", (500, 760))]
PHONES = [(1080, 2340), (1080, 2400), (1440, 3200), (720, 1600)]
ELEMENT = (300, 120)  # element box on the grid (w, h)
COLORS = [(66, 133, 244), (52, 168, 83), (251, 188, 5), (234, 67, 53), (155, 81, 224), (0, 150, 136)]
DEFECTS = ["malformed_json_line", "unparseable_action", "unknown_action_type", "missing_screenshot",
           "unreadable_screenshot", "click_outside_image", "missing_survey", "empty_intent"]


def raw_ids(n: int) -> list[int]:
    """Non-contiguous numeric ids like the real release (1, 3, 4, 5, 6, 9, ...)."""
    ids, i = [], 1
    while len(ids) < n:
        if i not in (2, 7, 8):
            ids.append(i)
        i += 1
    return ids


def element_boxes(app: int, intent: int) -> list[tuple[str, tuple[int, int, int, int]]]:
    """[(label, (x1, y1, x2, y2) on the grid)] for the intent's candidate elements."""
    names = APPS[app]["intents"][intent][1]
    out = []
    for i, name in enumerate(names):
        cx, cy = SLOTS[(intent + i * 2 + app) % len(SLOTS)]  # candidates 0 and 3 share a slot (3 drawn on top)
        out.append((name, (cx - ELEMENT[0] // 2, cy - ELEMENT[1] // 2, cx + ELEMENT[0] // 2, cy + ELEMENT[1] // 2)))
    return out


def dialog_boxes():
    return [(name, (cx - 120, cy - 50, cx + 120, cy + 50)) for name, (cx, cy) in DIALOG_BUTTONS]


def _px(box, w, h):
    return (box[0] * w // 1000, box[1] * h // 1000, box[2] * w // 1000, box[3] * h // 1000)


def render(boxes, w, h, dialog: bool, app: int) -> bytes:
    bg = (40, 40, 48) if dialog else (245, 245, 245)
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    d.rectangle((0, 0, w, h * 6 // 100), fill=COLORS[app % len(COLORS)])  # the app's title bar
    if dialog:
        d.rectangle(_px((100, 500, 900, 850), w, h), fill=(255, 255, 255))
    for i, (_, box) in enumerate(boxes):
        d.rectangle(_px(box, w, h), fill=COLORS[(i + 2) % len(COLORS)], outline=(0, 0, 0))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def tree_xml(boxes, w, h, package: str) -> str:
    nodes = [f'<node index="0" text="" class="android.widget.FrameLayout" package="{package}" '
             f'content-desc="" clickable="false" bounds="[0,0][{w},{h}]">']
    for i, (name, box) in enumerate(boxes, start=1):
        x1, y1, x2, y2 = _px(box, w, h)
        nodes.append(f'  <node index="{i}" text="{name}" class="android.widget.Button" package="{package}" '
                     f'content-desc="{name}" clickable="true" bounds="[{x1},{y1}][{x2},{y2}]" />')
    nodes.append("</node>")
    return '<?xml version="1.0" encoding="UTF-8"?>\n<hierarchy rotation="0">\n' + "\n".join(nodes) + "\n</hierarchy>\n"


class _Episode:
    """Collects one episode's screenshots, trees and action lines, then writes them."""

    def __init__(self, ep_dir: Path, t0_ms: int):
        self.dir, self.t, self.lines, self.files = ep_dir, t0_ms, [], {}
        self.shots = ep_dir / f"Screenshots_{ep_dir.name}"

    def step(self, jpeg: bytes, action: str, xml: str | None = None) -> str:
        self.t += 1700
        name = f"{self.t}.jpg"
        self.files[name] = jpeg
        if xml is not None:
            self.files[f"tree_{self.t}.xml"] = xml.encode("utf-8")
        self.lines.append(json.dumps({name: action}, ensure_ascii=False))
        return name

    def write(self, survey: dict | None):
        self.shots.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (self.shots / name).write_bytes(data)
        (self.dir / "action.jsonl").write_text("\n".join(self.lines) + "\n", encoding="utf-8")
        if survey is not None:
            (self.dir / "survey_result.json").write_text(json.dumps(survey, ensure_ascii=False), encoding="utf-8")


def synth(out: str | Path, users: int = 12, episodes: int = 50, seed: int = 0, scale: float = 0.25,
          defects: bool = True, noise: float = 0.05, common: float = 0.4, test_users: int = 3, test_episodes: int | None = None) -> dict:
    """Write RAW; returns {"raw_users": [...], "episodes": n, "defects": {reason: n}}."""
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; synth writes a fresh tree (remove it or pick another --out)")
    rng = random.Random(seed)
    ids = raw_ids(users)
    intents = [(a, i) for a in range(len(APPS)) for i in range(len(APPS[a]["intents"]))]
    cache: dict = {}
    base = datetime(2025, 3, 1, 9, 0, 0)
    n_eps, planted = 0, {}
    defect_queue = list(DEFECTS) if defects else []
    # test users' habits: one random permutation of candidates 0-2 (distinct slots) per intent, user k its k-th
    perm_rng = random.Random(seed + 7919)
    test_perm = {key: perm_rng.sample(range(3), 3) for key in intents}
    dialog_perm = perm_rng.sample(range(len(DIALOG_BUTTONS)), len(DIALOG_BUTTONS))
    for u_idx, uid in enumerate(ids):
        w, h = PHONES[0 if u_idx < test_users else u_idx % len(PHONES)]  # test users: one phone, the same screens
        w, h = max(64, int(w * scale)), max(64, int(h * scale))
        # preferred element per intent: many people tap the obvious one (element 0), the rest their own
        habit = {key: 0 if rng.random() < common else rng.randrange(1, 4) for key in intents}
        dialog_habit = rng.randrange(len(DIALOG_BUTTONS))
        if u_idx < test_users:  # drawn above all the same, so the other users' streams do not move
            habit = {key: test_perm[key][u_idx % 3] for key in intents}
            dialog_habit = dialog_perm[u_idx % len(DIALOG_BUTTONS)]
        udir = out / str(uid) / str(uid) if u_idx % 4 == 3 else out / str(uid)  # some users nested
        n_user_eps = (test_episodes or episodes) if u_idx < test_users else episodes
        for e in range(n_user_eps):
            when = base + timedelta(days=u_idx * 40 + e // 3, hours=(e % 3) * 3, seconds=rng.randrange(3600))
            ep = _Episode(udir / when.strftime("%Y%m%d_%H%M%S"), int(when.timestamp() * 1000))
            a, i = intents[rng.randrange(len(intents))]
            intent = APPS[a]["intents"][i][0]
            pkg = APPS[a]["package"]
            boxes = element_boxes(a, i)
            key = (w, h, a, i)
            if key not in cache:
                cache[key] = (render(boxes, w, h, False, a), tree_xml(boxes, w, h, pkg))
            shot, xml = cache[key]
            if rng.random() < 0.3:
                ep.step(shot, "press_home()")
            if rng.random() < 0.2:
                ep.step(shot, f"scroll(coordinates=({w // 2}, {h // 2}), direction='{rng.choice(['up', 'down'])}')")
            choice = habit[(a, i)] if rng.random() >= noise else rng.randrange(4)
            name, box = boxes[choice]
            gx = (box[0] + box[2]) / 2 + rng.uniform(-40, 40)
            gy = (box[1] + box[3]) / 2 + rng.uniform(-15, 15)
            verb = "long_click" if rng.random() < 0.08 else "click"
            ep.step(shot, f"{verb}(coordinates=({int(gx * w / 1000)}, {int(gy * h / 1000)}), content='{name}')", xml)
            if rng.random() < 0.25:
                ep.step(shot, f"type(text='{rng.choice(['蓝牙耳机', 'hello, world', '晚点回家'])}')")
            if rng.random() < 0.15:  # a confirmation dialog: the user's preferred button
                dkey = (w, h, "dialog", a)
                dboxes = dialog_boxes()
                if dkey not in cache:
                    cache[dkey] = (render(dboxes, w, h, True, a), tree_xml(dboxes, w, h, pkg))
                dshot, dxml = cache[dkey]
                bname, bbox = dboxes[dialog_habit if rng.random() >= noise else rng.randrange(len(dboxes))]
                bx = (bbox[0] + bbox[2]) / 2 + rng.uniform(-30, 30)
                by = (bbox[1] + bbox[3]) / 2 + rng.uniform(-10, 10)
                ep.step(dshot, f"click(coordinates=({int(bx * w / 1000)}, {int(by * h / 1000)}), content='{bname}')",
                        dxml)
            if rng.random() < 0.1:
                ep.step(shot, rng.choice(["wait()", "press_back()", "press_recent()"]))
            ep.step(shot, "finished()")
            survey = {"user_id": str(uid), "time": when.strftime("%Y-%m-%d %H:%M:%S"),
                      "scenario": rng.choice(["home", "commute", "work"]), "app": pkg,
                      "intentDescription": intent}
            # plant one of each defect in the global users' episodes (test users stay clean)
            if defect_queue and u_idx >= test_users and e % 7 == 3:
                reason = defect_queue.pop(0)
                survey = _plant(ep, reason, survey, w, h)
                planted[reason] = planted.get(reason, 0) + 1
            ep.write(survey)
            n_eps += 1
    return {"raw_users": ids, "episodes": n_eps, "defects": planted}


def _plant(ep: _Episode, reason: str, survey: dict, w: int, h: int) -> dict | None:
    if reason == "malformed_json_line":
        ep.lines.insert(0, '{"1741498279844.jpg": "click(coordinates=(1, 2)')
    elif reason == "unparseable_action":
        ep.lines.insert(0, json.dumps({"x.jpg": "click(coordinates=(1, 2, 3), content='x')"}))
    elif reason == "unknown_action_type":
        ep.lines.insert(0, json.dumps({"x.jpg": "double_tap(coordinates=(1, 2))"}))
    elif reason == "missing_screenshot":
        ep.lines.insert(0, json.dumps({"999.jpg": "click(coordinates=(10, 20), content='gone')"}))
    elif reason == "unreadable_screenshot":
        ep.files["888.jpg"] = b"not a jpeg"
        ep.lines.insert(0, json.dumps({"888.jpg": "click(coordinates=(10, 20), content='broken')"}))
    elif reason == "click_outside_image":
        first = next(iter(ep.files))
        ep.lines.insert(0, json.dumps({first: f"click(coordinates=({w + 50}, {h // 2}), content='off')"}))
    elif reason == "missing_survey":
        return None
    elif reason == "empty_intent":
        return {**survey, "intentDescription": ""}
    return survey
