"""GB/T 4754-2017 国民经济行业分类: the 20 sections (门类) and 97 divisions (大类),
plus best-effort resolution of the free-text industry names sales teams type in.
"""

import re
import unicodedata

SECTIONS: dict[str, str] = {
    "A": "农、林、牧、渔业",
    "B": "采矿业",
    "C": "制造业",
    "D": "电力、热力、燃气及水生产和供应业",
    "E": "建筑业",
    "F": "批发和零售业",
    "G": "交通运输、仓储和邮政业",
    "H": "住宿和餐饮业",
    "I": "信息传输、软件和信息技术服务业",
    "J": "金融业",
    "K": "房地产业",
    "L": "租赁和商务服务业",
    "M": "科学研究和技术服务业",
    "N": "水利、环境和公共设施管理业",
    "O": "居民服务、修理和其他服务业",
    "P": "教育",
    "Q": "卫生和社会工作",
    "R": "文化、体育和娱乐业",
    "S": "公共管理、社会保障和社会组织",
    "T": "国际组织",
}

DIVISIONS: dict[str, tuple[str, str]] = {
    "01": ("A", "农业"),
    "02": ("A", "林业"),
    "03": ("A", "畜牧业"),
    "04": ("A", "渔业"),
    "05": ("A", "农、林、牧、渔专业及辅助性活动"),
    "06": ("B", "煤炭开采和洗选业"),
    "07": ("B", "石油和天然气开采业"),
    "08": ("B", "黑色金属矿采选业"),
    "09": ("B", "有色金属矿采选业"),
    "10": ("B", "非金属矿采选业"),
    "11": ("B", "开采专业及辅助性活动"),
    "12": ("B", "其他采矿业"),
    "13": ("C", "农副食品加工业"),
    "14": ("C", "食品制造业"),
    "15": ("C", "酒、饮料和精制茶制造业"),
    "16": ("C", "烟草制品业"),
    "17": ("C", "纺织业"),
    "18": ("C", "纺织服装、服饰业"),
    "19": ("C", "皮革、毛皮、羽毛及其制品和制鞋业"),
    "20": ("C", "木材加工和木、竹、藤、棕、草制品业"),
    "21": ("C", "家具制造业"),
    "22": ("C", "造纸和纸制品业"),
    "23": ("C", "印刷和记录媒介复制业"),
    "24": ("C", "文教、工美、体育和娱乐用品制造业"),
    "25": ("C", "石油、煤炭及其他燃料加工业"),
    "26": ("C", "化学原料和化学制品制造业"),
    "27": ("C", "医药制造业"),
    "28": ("C", "化学纤维制造业"),
    "29": ("C", "橡胶和塑料制品业"),
    "30": ("C", "非金属矿物制品业"),
    "31": ("C", "黑色金属冶炼和压延加工业"),
    "32": ("C", "有色金属冶炼和压延加工业"),
    "33": ("C", "金属制品业"),
    "34": ("C", "通用设备制造业"),
    "35": ("C", "专用设备制造业"),
    "36": ("C", "汽车制造业"),
    "37": ("C", "铁路、船舶、航空航天和其他运输设备制造业"),
    "38": ("C", "电气机械和器材制造业"),
    "39": ("C", "计算机、通信和其他电子设备制造业"),
    "40": ("C", "仪器仪表制造业"),
    "41": ("C", "其他制造业"),
    "42": ("C", "废弃资源综合利用业"),
    "43": ("C", "金属制品、机械和设备修理业"),
    "44": ("D", "电力、热力生产和供应业"),
    "45": ("D", "燃气生产和供应业"),
    "46": ("D", "水的生产和供应业"),
    "47": ("E", "房屋建筑业"),
    "48": ("E", "土木工程建筑业"),
    "49": ("E", "建筑安装业"),
    "50": ("E", "建筑装饰、装修和其他建筑业"),
    "51": ("F", "批发业"),
    "52": ("F", "零售业"),
    "53": ("G", "铁路运输业"),
    "54": ("G", "道路运输业"),
    "55": ("G", "水上运输业"),
    "56": ("G", "航空运输业"),
    "57": ("G", "管道运输业"),
    "58": ("G", "多式联运和运输代理业"),
    "59": ("G", "装卸搬运和仓储业"),
    "60": ("G", "邮政业"),
    "61": ("H", "住宿业"),
    "62": ("H", "餐饮业"),
    "63": ("I", "电信、广播电视和卫星传输服务"),
    "64": ("I", "互联网和相关服务"),
    "65": ("I", "软件和信息技术服务业"),
    "66": ("J", "货币金融服务"),
    "67": ("J", "资本市场服务"),
    "68": ("J", "保险业"),
    "69": ("J", "其他金融业"),
    "70": ("K", "房地产业"),
    "71": ("L", "租赁业"),
    "72": ("L", "商务服务业"),
    "73": ("M", "研究和试验发展"),
    "74": ("M", "专业技术服务业"),
    "75": ("M", "科技推广和应用服务业"),
    "76": ("N", "水利管理业"),
    "77": ("N", "生态保护和环境治理业"),
    "78": ("N", "公共设施管理业"),
    "79": ("N", "土地管理业"),
    "80": ("O", "居民服务业"),
    "81": ("O", "机动车、电子产品和日用产品修理业"),
    "82": ("O", "其他服务业"),
    "83": ("P", "教育"),
    "84": ("Q", "卫生"),
    "85": ("Q", "社会工作"),
    "86": ("R", "新闻和出版业"),
    "87": ("R", "广播、电视、电影和录音制作业"),
    "88": ("R", "文化艺术业"),
    "89": ("R", "体育"),
    "90": ("R", "娱乐业"),
    "91": ("S", "中国共产党机关"),
    "92": ("S", "国家机构"),
    "93": ("S", "人民政协、民主党派"),
    "94": ("S", "社会保障"),
    "95": ("S", "群众团体、社会团体和其他成员组织"),
    "96": ("S", "基层群众自治组织及其他组织"),
    "97": ("T", "国际组织"),
}

# Sections K, P and T each hold a single division with the same name (70, 83, 97); the section
# letter is used as the canonical code for them everywhere so a customer never ends up filed
# under two codes that mean the same thing.
# Words that straddle several divisions across sections (能源, 汽车, 通信, 游戏, 传媒, 石油...)
# are deliberately left out: guessing there would silently misfile customers.
SYNONYMS: dict[str, str] = {
    # I
    "互联网": "I",
    "IT": "I",
    "信息技术": "I",
    "软件": "65",
    "SaaS": "65",
    "电信": "63",
    "运营商": "63",
    # C
    "制造业": "C",
    "制造": "C",
    "工厂": "C",
    "化工": "26",
    "制药": "27",
    "医疗器械": "35",
    "纺织": "17",
    "服装": "18",
    "钢铁": "31",
    # A, B, D, E
    "种植": "01",
    "采矿": "B",
    "矿业": "B",
    "煤矿": "06",
    "电力": "44",
    "燃气": "45",
    "供水": "46",
    "水务": "46",
    "建筑": "E",
    "装修": "50",
    # F
    "批发": "51",
    "零售": "52",
    "电商": "52",
    "电子商务": "52",
    "超市": "52",
    "贸易": "F",
    "商贸": "F",
    # G, H
    "物流": "G",
    "运输": "G",
    "交通": "G",
    "快递": "60",
    "仓储": "59",
    "航运": "55",
    "酒店": "61",
    "住宿": "61",
    "餐饮": "62",
    # J, K
    "金融": "J",
    "银行": "66",
    "证券": "67",
    "期货": "67",
    "私募": "67",
    "保险": "68",
    "信托": "69",
    "支付": "69",
    "房地产": "K",
    "地产": "K",
    "物业": "K",
    # L, M, N, O
    "租赁": "71",
    "广告": "72",
    "咨询": "72",
    "法律": "72",
    "会计": "72",
    "人力资源": "72",
    "科研": "73",
    "研发": "73",
    "检测": "74",
    "环保": "77",
    "家政": "80",
    "美容": "80",
    # P, Q, R, S
    "教育": "P",
    "培训": "P",
    "学校": "P",
    "医疗": "84",
    "医院": "84",
    "养老": "85",
    "出版": "86",
    "影视": "87",
    "娱乐": "90",
    "政府": "92",
    # English
    "internet": "I",
    "software": "65",
    "telecom": "63",
    "manufacturing": "C",
    "pharmaceutical": "27",
    "mining": "B",
    "agriculture": "A",
    "construction": "E",
    "wholesale": "51",
    "retail": "52",
    "e-commerce": "52",
    "logistics": "G",
    "hotel": "61",
    "restaurant": "62",
    "finance": "J",
    "banking": "66",
    "insurance": "68",
    "real estate": "K",
    "consulting": "72",
    "advertising": "72",
    "education": "P",
    "healthcare": "84",
    "government": "92",
}

# Dropped before comparing Chinese names so '农林牧渔' still matches '农、林、牧、渔业'.
_SEPARATORS = re.compile(r"[\s、,;/·.]+")
_ASCII_KEY = re.compile(r"[ -~]+")


def _normalize(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _compact(text: str) -> str:
    return _SEPARATORS.sub("", _normalize(text))


def _section_of(code: str) -> str:
    return code if code in SECTIONS else DIVISIONS[code][0]


def _build_name_index() -> dict[str, str]:
    index = {_compact(name): code for code, (_, name) in DIVISIONS.items()}
    # Sections are written last so they win the shared names of K/70, P/83 and T/97.
    index.update({_compact(name): code for code, name in SECTIONS.items()})
    return index


_NAME_INDEX: dict[str, str] = _build_name_index()
_SYNONYM_INDEX: dict[str, str] = {_normalize(k): v for k, v in SYNONYMS.items()}


def _closest_in_one_section(hits: list[tuple[int, str]]) -> str | None:
    """Pick the best-fitting code, refusing when hits span sections or tie."""
    if not hits or len({_section_of(code) for _, code in hits}) != 1:
        return None
    best = min(score for score, _ in hits)
    winners = {code for score, code in hits if score == best}
    return winners.pop() if len(winners) == 1 else None


def _fragment_of_name(compact: str) -> str | None:
    # One character ('水', '业') is a fragment of too many names to mean anything.
    if len(compact) < 2:
        return None
    hits = [
        (len(name) - len(compact), code) for name, code in _NAME_INDEX.items() if compact in name
    ]
    return _closest_in_one_section(hits)


def _contains_name(compact: str) -> str | None:
    hits = [
        (len(compact) - len(name), code) for name, code in _NAME_INDEX.items() if name in compact
    ]
    return _closest_in_one_section(hits)


def _contains_synonym(normalized: str) -> str | None:
    hits: list[str] = []
    for key in _SYNONYM_INDEX:
        if _ASCII_KEY.fullmatch(key):
            # Whole-word only, or 'it' would fire inside 'security'.
            if re.search(rf"(?<![a-z0-9]){re.escape(key)}(?![a-z0-9])", normalized):
                hits.append(key)
        elif key in normalized:
            hits.append(key)
    # '医疗器械销售' hits both '医疗' and '医疗器械'; the longer, more specific key decides.
    specific = [k for k in hits if not any(k != other and k in other for other in hits)]
    codes = {_SYNONYM_INDEX[k] for k in specific}
    return codes.pop() if len(codes) == 1 else None


def resolve_industry(text: str) -> str | None:
    """Map free text to a section letter or division code; None if unknown or ambiguous."""
    normalized = _normalize(text)
    if not normalized:
        return None
    upper = normalized.upper()
    if upper in SECTIONS or upper in DIVISIONS:
        return upper
    compact = _compact(normalized)
    if compact in _NAME_INDEX:
        return _NAME_INDEX[compact]
    if normalized in _SYNONYM_INDEX:
        return _SYNONYM_INDEX[normalized]
    # A fragment of an official name is the strongest fuzzy signal; a synonym inside the text
    # beats an official name inside it, because short names like '体育' or '农业' turn up in
    # unrelated phrases ('体育用品零售', '农业银行').
    return _fragment_of_name(compact) or _contains_synonym(normalized) or _contains_name(compact)


def industry_label(code: str) -> str:
    """Chinese name of a section letter or division code; KeyError if unknown."""
    if code in SECTIONS:
        return SECTIONS[code]
    if code in DIVISIONS:
        return DIVISIONS[code][1]
    raise KeyError(code)


def all_industries() -> list[dict[str, str]]:
    """Sections then divisions, each in code order, as plain dicts for the enums endpoint."""
    sections = [{"code": c, "label": n, "section": c} for c, n in sorted(SECTIONS.items())]
    divisions = [{"code": c, "label": n, "section": s} for c, (s, n) in sorted(DIVISIONS.items())]
    return sections + divisions
