"""Pinyin for matching: fuzzy syllables, splitting pinyin typed without spaces, particles.

Southern speakers and hasty typists confuse zh/z, n/l, in/ing; people also type whole
questions in pinyin, often without spaces. These helpers fold and split such input.
"""
from __future__ import annotations

# Toneless pinyin of particles, dropped from questions typed in pinyin.
PINYIN_STOPWORDS = (
    ("shen", "me"), ("zen", "me"), ("zen", "yang"), ("ru", "he"), ("ke", "yi"), ("you", "mei"),
    ("mei", "you"), ("na", "li"), ("duo", "shao"), ("wo", "men"), ("ni", "men"),
    ("de",), ("le",), ("ma",), ("ne",), ("ba",), ("a",), ("ya",), ("la",), ("wo",), ("ni",),
)

# Standard Mandarin syllables, for splitting pinyin typed without spaces.
SYLLABLES = frozenset("""
a ai an ang ao ba bai ban bang bao bei ben beng bi bian biao bie bin bing bo bu ca cai can
cang cao ce cen ceng cha chai chan chang chao che chen cheng chi chong chou chu chua chuai chuan
chuang chui chun chuo ci cong cou cu cuan cui cun cuo da dai dan dang dao de dei deng di dia
dian diao die ding diu dong dou du duan dui dun duo e ei en eng er fa fan fang fei fen feng fo
fou fu ga gai gan gang gao ge gei gen geng gong gou gu gua guai guan guang gui gun guo ha hai han
hang hao he hei hen heng hong hou hu hua huai huan huang hui hun huo ji jia jian jiang jiao jie
jin jing jiong jiu ju juan jue jun ka kai kan kang kao ke ken keng kong kou ku kua kuai kuan
kuang kui kun kuo la lai lan lang lao le lei leng li lia lian liang liao lie lin ling liu long
lou lu luan lue lun luo lv ma mai man mang mao me mei men meng mi mian miao mie min ming miu mo
mou mu na nai nan nang nao ne nei nen neng ni nian niang niao nie nin ning niu nong nou nu nuan
nue nuo nv o ou pa pai pan pang pao pei pen peng pi pian piao pie pin ping po pou pu qi qia qian
qiang qiao qie qin qing qiong qiu qu quan que qun ran rang rao re ren reng ri rong rou ru ruan
rui run ruo sa sai san sang sao se sen seng sha shai shan shang shao she shei shen sheng shi shou
shu shua shuai shuan shuang shui shun shuo si song sou su suan sui sun suo ta tai tan tang tao
te teng ti tian tiao tie ting tong tou tu tuan tui tun tuo wa wai wan wang wei wen weng wo wu xi
xia xian xiang xiao xie xin xing xiong xiu xu xuan xue xun ya yan yang yao ye yi yin ying yo yong
you yu yuan yue yun za zai zan zang zao ze zei zen zeng zha zhai zhan zhang zhao zhe zhen zheng
zhi zhong zhou zhu zhua zhuai zhuan zhuang zhui zhun zhuo zi zong zou zu zuan zui zun zuo
""".split())
MAX_SYLLABLE = 6


def fuzzy(syllable: str) -> str:
    """Fold the sounds that southern speakers and hasty typists confuse: zh/z, n/l, ing/in..."""
    if syllable == "shei":  # 谁: pypinyin reads shui, people type shei
        return "sui"
    if syllable[:2] in ("zh", "ch", "sh"):
        syllable = syllable[0] + syllable[2:]
    elif syllable[0] == "n" and len(syllable) > 1:
        syllable = "l" + syllable[1:]
    if syllable.endswith("ng") and syllable[-3] in "aei":
        syllable = syllable[:-1]
    return syllable.replace("v", "u")


def split_pinyin(word: str) -> list[str] | None:
    """Split pinyin typed without spaces into syllables (fewest pieces), or None if it is not."""
    best: list[list[str] | None] = [None] * (len(word) + 1)
    best[0] = []
    for end in range(1, len(word) + 1):
        for start in range(max(0, end - MAX_SYLLABLE), end):
            head = best[start]
            if head is not None and word[start:end] in SYLLABLES:
                known = best[end]
                if known is None or len(head) + 1 < len(known):
                    best[end] = head + [word[start:end]]
    return best[-1]


def drop_particles(syllables: list[str]) -> list[str]:
    """Remove particles (shenme, ma, de...) from pinyin input, as hanzi input drops 什么, 吗, 的."""
    out: list[str] = []
    i = 0
    while i < len(syllables):
        for words in PINYIN_STOPWORDS:
            if tuple(syllables[i:i + len(words)]) == words:
                out.append("|")
                i += len(words)
                break
        else:
            out.append(fuzzy(syllables[i]))
            i += 1
    return out
