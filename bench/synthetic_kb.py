"""Write a synthetic knowledge base of N topics in the policies/ TOML format.

Topics combine a founder group, a trade, a kind of support and a township, so titles,
keywords and example questions read like the real ones and overlap the way real topics
do (many share 贷款 or 培训, few share a whole combination). Used by bench/matcher.py.

    python -m bench.synthetic_kb 1000 /tmp/kb1000
"""
from __future__ import annotations

import itertools
import random
import sys
from pathlib import Path

from bot.knowledge.load import CATEGORY_IDS

GROUPS = ("返乡农民工", "大学毕业生", "退役军人", "农村妇女", "下岗职工", "个体户", "种养大户",
          "科技人员", "机关干部", "残疾人", "村干部", "留守老人", "合作社社员", "小微企业主",
          "青年创客")
TRADES = ("茶叶", "高山蔬菜", "生猪养殖", "肉牛养殖", "山羊养殖", "香菇", "木耳", "中药材", "油茶",
          "竹编", "农家乐", "民宿", "农村电商", "快递物流", "粮油加工", "水产养殖", "果园", "花卉苗木",
          "土蜂蜜", "腊肉加工", "米粉作坊", "乡村旅游", "家政服务", "汽车维修", "服装加工", "建材",
          "小超市", "餐饮小吃", "养鸡场", "魔芋种植")
SUPPORTS = (("贴息贷款", "贷款"), ("创业补贴", "补贴"), ("技能培训", "培训"), ("税费减免", "免税"),
            ("用地保障", "用地"), ("厂房租赁", "厂房"), ("审批服务", "审批"), ("营业执照", "执照"),
            ("创业奖励", "奖励"), ("农业保险", "保险"), ("品牌认证", "认证"), ("市场对接", "销路"))
PLACES = ("城关镇", "石桥镇", "青山乡", "白沙镇", "龙潭乡", "清水镇", "大坪乡", "河口镇")
QUESTIONS = (
    "{group}搞{trade}有没有{support}",
    "{trade}{short}怎么申请",
    "{place}的{trade}{short}能给多少",
    "我是{group}想做{trade}能享受{support}吗",
    "{support}对{trade}有啥要求",
    "在{place}办{trade}要准备什么材料申请{short}",
    "{trade}的{short}去哪里办",
    "{group}申请{support}的条件是什么",
    "想问一下{trade}{short}什么时候发",
    "{place}{trade}{support}政策",
)


def topics(count: int, seed: int = 7) -> list[dict]:
    """count distinct synthetic topics, each with keywords and eight example questions."""
    rng = random.Random(seed)
    combos = list(itertools.product(GROUPS, TRADES, SUPPORTS, PLACES))
    rng.shuffle(combos)
    if count > len(combos):
        raise ValueError(f"at most {len(combos)} distinct topics")
    out = []
    for number, (group, trade, (support, short), place) in enumerate(combos[:count]):
        words = {"group": group, "trade": trade, "support": support, "short": short, "place": place}
        examples = [q.format(**words) for q in rng.sample(QUESTIONS, 8)]
        out.append({
            "id": f"{CATEGORY_IDS[number % len(CATEGORY_IDS)]}.t{number:05d}",
            "title": f"{place}{group}{trade}{support}",
            "keywords": [f"{trade}{short}", f"{group}{short}", f"{place}{trade}"],
            "examples": examples,
            "words": words,
        })
    return out


def write(folder: Path, count: int, seed: int = 7) -> list[dict]:
    """Write count topics into folder as one TOML file per category; return the topics."""
    folder.mkdir(parents=True, exist_ok=True)
    made = topics(count, seed)
    for order, category in enumerate(CATEGORY_IDS, 1):
        lines = [f'title = "分类{order}"', f"order = {order}", ""]
        for topic in made:
            if topic["id"].split(".")[0] != category:
                continue
            lines += [
                f'[topics."{topic["id"]}"]',
                f'title = "{topic["title"]}"',
                f'answer = "{topic["title"]}的办理说明，详询{{bureau}}，电话{{hotline}}。"',
                "keywords = [" + ", ".join(f'"{k}"' for k in topic["keywords"]) + "]",
                "examples = [" + ", ".join(f'"{e}"' for e in topic["examples"]) + "]",
                "",
                f'[topics."{topic["id"]}".details]',
                f'eligibility = "{topic["words"]["group"]}"',
                f'benefits = "{topic["words"]["support"]}"',
                'how_to_apply = "到窗口申请"',
                'documents = "身份证"',
                'office = "{address}"',
                "",
            ]
        (folder / f"{category}.toml").write_text("\n".join(lines), encoding="utf-8")
    (folder / "synonyms.toml").write_text(
        '[synonyms]\n"贷款" = ["借钱", "代款"]\n"培训" = ["学手艺", "陪训"]\n"什么" = ["么子", "啥子"]\n',
        encoding="utf-8")
    return made


if __name__ == "__main__":
    write(Path(sys.argv[2]), int(sys.argv[1]))
