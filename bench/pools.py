"""Word pools the generator assembles names, phones and emails from, with their pinyin.

Person names are drawn from a pool whose pinyin is computed on each whole name by the app's own
`app.customers.normalize.pinyin_forms`. Company names are assembled from parts in SQL; a part is
kept only when the pinyin of every neighbour pair equals the concatenation of the parts' pinyin
(pypinyin segments phrases, so a polyphonic character can read differently next to another).
The generator checks a sample of rows against the app's own `search_text` after loading.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import phonenumbers
from pypinyin import lazy_pinyin

from app.customers.normalize import pinyin_forms

# (province, city, short name used in company names, area code of its landlines)
CITIES: list[tuple[str, str, str, str]] = [
    ("北京市", "北京市", "北京", "10"),
    ("上海市", "上海市", "上海", "21"),
    ("广东省", "广州市", "广州", "20"),
    ("广东省", "深圳市", "深圳", "755"),
    ("浙江省", "杭州市", "杭州", "571"),
    ("江苏省", "南京市", "南京", "25"),
    ("江苏省", "苏州市", "苏州", "512"),
    ("湖北省", "武汉市", "武汉", "27"),
    ("四川省", "成都市", "成都", "28"),
    ("陕西省", "西安市", "西安", "29"),
    ("天津市", "天津市", "天津", "22"),
    ("重庆市", "重庆市", "重庆", "23"),
    ("山东省", "青岛市", "青岛", "532"),
    ("山东省", "济南市", "济南", "531"),
    ("福建省", "厦门市", "厦门", "592"),
    ("福建省", "福州市", "福州", "591"),
    ("河南省", "郑州市", "郑州", "371"),
    ("湖南省", "长沙市", "长沙", "731"),
    ("辽宁省", "沈阳市", "沈阳", "24"),
    ("辽宁省", "大连市", "大连", "411"),
    ("安徽省", "合肥市", "合肥", "551"),
    ("云南省", "昆明市", "昆明", "871"),
    ("江苏省", "无锡市", "无锡", "510"),
    ("浙江省", "宁波市", "宁波", "574"),
    ("广东省", "东莞市", "东莞", "769"),
    ("广东省", "佛山市", "佛山", "757"),
    ("河北省", "石家庄市", "石家庄", "311"),
    ("山西省", "太原市", "太原", "351"),
    ("江西省", "南昌市", "南昌", "791"),
    ("广西壮族自治区", "南宁市", "南宁", "771"),
    ("贵州省", "贵阳市", "贵阳", "851"),
    ("黑龙江省", "哈尔滨市", "哈尔滨", "451"),
    ("吉林省", "长春市", "长春", "431"),
    ("海南省", "海口市", "海口", "898"),
]

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶"
    "程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾"
    "毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉建国文辉林斌鹏宇浩凯婷雪琳晨欣佳怡慧"
    "博宁倩颖峰鑫波红梅兰丹俊亮晓志海春飞燕东云龙凤荣德成新宏家金永嘉思雨子天晶璐瑶琪萍蕾"
    "淑珍丽霖昊然泽轩睿哲航铭昕悦涵诗梓瑞彤雯琦璇玲莉薇菲蓉妍"
)
BRAND = (
    "华信达鑫泰恒盛宏博瑞通源德隆新兴创科联汇金康安佳远航星润丰美鼎和中天海正永东方宇腾"
    "飞祥云启明辉耀弘嘉益诚志合富民聚宝智凯锦顺昌荣旭晟峰浩睿捷迅维领越优品尚"
)
# industry word → GB/T 4754 division it suggests
INDUSTRY_WORDS: list[tuple[str, str]] = [
    ("科技", "65"),
    ("信息技术", "65"),
    ("软件", "65"),
    ("网络", "64"),
    ("电子", "39"),
    ("贸易", "51"),
    ("商贸", "51"),
    ("制造", "34"),
    ("机械", "34"),
    ("物流", "58"),
    ("餐饮", "62"),
    ("建筑", "47"),
    ("建设", "48"),
    ("医药", "27"),
    ("医疗器械", "35"),
    ("教育", "83"),
    ("咨询", "72"),
    ("服装", "18"),
    ("食品", "14"),
    ("化工", "26"),
    ("传媒", "86"),
    ("文化", "88"),
    ("能源", "44"),
    ("环保", "77"),
    ("农业", "01"),
    ("汽车", "36"),
    ("新材料", "30"),
    ("印刷", "23"),
    ("家具", "21"),
    ("装饰", "50"),
    ("广告", "72"),
    ("人力资源", "72"),
    ("酒店管理", "61"),
    ("置业", "70"),
    ("投资", "72"),
    ("供应链", "72"),
    ("包装", "22"),
    ("五金", "33"),
    ("电器", "38"),
    ("健康", "84"),
]
SUFFIXES = ["有限公司", "有限公司", "有限公司", "股份有限公司", "集团有限公司", "有限责任公司"]
ENGLISH_NAMES = [
    "Acme Trading Co., Ltd.",
    "Bright Future Technology Ltd.",
    "Golden Bridge Logistics",
    "Pacific Rim Foods Co.",
    "Blue Ocean Consulting",
    "Evergreen Medical Devices",
    "Northstar Software Ltd.",
    "Silkroad Apparel Co.",
    "Harbor Light Education",
    "Summit Auto Parts Ltd.",
    "Jade Garden Restaurant Group",
    "Lotus Digital Media",
    "Dragon Gate Investment",
    "Phoenix Machinery Co.",
    "Red Lantern Hotels",
    "Oriental Pearl Chemicals",
]
CONTACT_TITLE_WORDS = ["经理", "总", "主任", "老师", "工"]
MOBILE_PREFIXES = [
    "130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152",
    "153", "155", "156", "157", "158", "159", "166", "173", "175", "176", "177", "178",
    "180", "181", "182", "183", "185", "186", "187", "188", "189", "191", "198", "199",
]  # fmt: skip
EMAIL_DOMAINS = ["qq.com", "163.com", "126.com", "sina.com", "foxmail.com", "gmail.com"]


def _valid(number: str) -> bool:
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(number, "CN")))
    except phonenumbers.NumberParseException:
        return False


def _valid_mobile_prefixes(rng: random.Random) -> list[str]:
    return [
        p
        for p in MOBILE_PREFIXES
        if all(_valid(f"+86{p}{rng.randrange(10**8):08d}") for _ in range(20))
    ]


def _landline_length(area: str, rng: random.Random) -> int:
    """Digits of local numbers (first digit 2–8) that phonenumbers accepts; 0 when none."""
    for length in (8, 7):
        if all(
            _valid(
                f"+86{area}{rng.randint(2, 8)}{rng.randrange(10 ** (length - 1)):0{length - 1}d}"
            )
            for _ in range(20)
        ):
            return length
    return 0


@dataclass(frozen=True)
class Part:
    text: str
    full: str
    initials: str


def part(text: str) -> Part:
    full, initials = pinyin_forms(text)
    return Part(text, full, initials)


def _joins_cleanly(left: Part, right: Part) -> bool:
    """True when pypinyin reads left+right as the two parts read alone."""
    return "".join(lazy_pinyin(left.text + right.text, errors="ignore")).lower() == (
        left.full + right.full
    )


@dataclass(frozen=True)
class City:
    province: str
    city: str
    word: Part | None  # the short name used in company names, None when it joins badly
    area: str
    local_digits: int  # 0 when no landline format validated


@dataclass(frozen=True)
class Pools:
    cities: list[City]
    people: list[Part]  # whole person names, most common surnames first
    title_names: list[Part]  # 张经理, 李总 …
    brands: list[Part]
    industries: list[tuple[Part, str]]
    suffixes: list[Part]
    english: list[tuple[str, str, str, str]]  # name, lower, full, initials
    mobile_prefixes: list[str]
    rejected_parts: int


def _unique(text: str) -> list[str]:
    return list(dict.fromkeys(text))


def build(*, people: int, brands: int, seed: int = 20261123) -> Pools:
    """Pools sized for the base: `people` distinct person names, `brands` company brands."""
    rng = random.Random(seed)
    surnames = _unique(SURNAMES)
    given = _unique(GIVEN)
    # Surname frequency falls off steeply (王, 李, 张 … cover a large share of the population).
    weights = [1.0 / (rank + 3) for rank in range(len(surnames))]
    names: dict[str, Part] = {}
    while len(names) < people:
        surname = rng.choices(surnames, weights)[0]
        first = rng.choice(given)
        text = surname + first + (rng.choice(given) if rng.random() < 0.7 else "")
        if text not in names:
            names[text] = part(text)
    title_names = [part(s + t) for s in surnames[:40] for t in CONTACT_TITLE_WORDS]

    industries = [(part(w), div) for w, div in INDUSTRY_WORDS]
    suffixes = [part(s) for s in dict.fromkeys(SUFFIXES)]
    rejected = 0
    kept_industries = []
    for ind, div in industries:
        if all(_joins_cleanly(ind, s) for s in suffixes):
            kept_industries.append((ind, div))
        else:
            rejected += 1
    city_parts = {c[2]: part(c[2]) for c in CITIES}
    brand_chars = _unique(BRAND)
    brand_parts: dict[str, Part] = {}
    attempts = 0
    while len(brand_parts) < brands and attempts < brands * 20:
        attempts += 1
        text = rng.choice(brand_chars) + rng.choice(brand_chars)
        if text in brand_parts or text[0] == text[1]:
            continue
        b = part(text)
        if all(_joins_cleanly(b, ind) for ind, _ in kept_industries) and all(
            _joins_cleanly(c, b) for c in city_parts.values()
        ):
            brand_parts[text] = b
        else:
            rejected += 1
    cities = [
        City(prov, city, city_parts[word], area, _landline_length(area, rng))
        for prov, city, word, area in CITIES
    ]
    english = []
    for name in ENGLISH_NAMES:
        full, initials = pinyin_forms(name)
        english.append((name, name.lower(), full, initials))
    # Most common surnames first, so a skewed pick in SQL favours them.
    rank = {s: i for i, s in enumerate(surnames)}
    ordered = sorted(names.values(), key=lambda p: (rank[p.text[0]], rng.random()))
    return Pools(
        cities=cities,
        people=ordered,
        title_names=title_names,
        brands=list(brand_parts.values()),
        industries=kept_industries,
        suffixes=suffixes,
        english=english,
        mobile_prefixes=_valid_mobile_prefixes(rng),
        rejected_parts=rejected,
    )
