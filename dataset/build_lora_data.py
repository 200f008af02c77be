"""Build the small LoRA demo data sets (persona identity and general health Q&A) as chat JSONL files.

Every file is generated from the hand-written tables in this script with a seeded random generator, so running the
same command twice produces byte-identical output.  Examples:

    python dataset/build_lora_data.py identity --name Nova --maker "Starlight Lab"
    python dataset/build_lora_data.py medical
    python dataset/build_lora_data.py all
    python dataset/build_lora_data.py validate
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
DEFAULT_SEED = 42
DEFAULT_NAME = "Nova"
DEFAULT_MAKER = "Starlight Lab"
MAX_ZH_CHARS = 120
MAX_EN_WORDS = 60
MIN_IDENTITY_EVAL = 40

Conversation = list[dict[str, str]]

# --------------------------------------------------------------------------------------------------------------------
# Surface variation shared by both builders (constant tables)
# --------------------------------------------------------------------------------------------------------------------

EN_QUESTION_PREFIXES = (
    "", "hi, ", "hey there, ", "hello! ", "excuse me, ", "just curious, ", "quick question: ", "ok so ",
)
EN_REQUEST_PREFIXES = ("", "hi, ", "hey there, ", "hello! ", "ok, ")
ZH_QUESTION_PREFIXES = ("", "请问", "你好，", "嗨，", "那个，", "hi，", "想问一下，")
ZH_REQUEST_PREFIXES = ("", "你好，", "嗨，", "那个，", "麻烦")
EN_QUESTION_ENDINGS = ("?", "", "??")
EN_REQUEST_ENDINGS = (".", "", "!")
ZH_QUESTION_ENDINGS = ("？", "?", "")
ZH_REQUEST_ENDINGS = ("。", "！", "")
MED_EN_PREFIXES = ("Hi, ", "Hello, ", "Quick question: ", "Excuse me, ")
MED_ZH_PREFIXES = ("请问", "你好，", "想问一下，", "我想咨询一下，")

# Politeness openers and closing particles ignored when checking that eval questions are unseen in training.
NORMALISE_PREFIXES = (
    "hey there", "hey", "hello", "hi", "excuse me", "just curious", "quick question", "ok so", "ok", "please",
    "请问", "你好", "嗨", "那个", "想问一下", "我想咨询一下", "麻烦",
)
NORMALISE_SUFFIXES = ("please", "吧", "呀", "呢", "啊", "哦")
SEPARATORS = " ,，!！:：.。?？、;；~"

# --------------------------------------------------------------------------------------------------------------------
# Identity tables.  A category is "who", "name", "intro", "maker", "human", "ability",
# "other:<Name>" (are you <Name>?) or "company:<Org>" (were you made by <Org>?).
# --------------------------------------------------------------------------------------------------------------------

IDENTITY_TRAIN_EN: tuple[tuple[str, str], ...] = (
    ("who", "Who are you?"), ("who", "Who am I talking to?"), ("who", "Who is this?"), ("who", "What are you?"),
    ("who", "Who are you exactly?"), ("who", "What kind of AI are you?"), ("who", "Which assistant are you?"),
    ("who", "What AI is this?"),
    ("name", "What's your name?"), ("name", "What is your name?"), ("name", "Do you have a name?"),
    ("name", "What are you called?"), ("name", "Tell me your name."), ("name", "What name do you go by?"),
    ("name", "What should I call you?"), ("name", "How should I address you?"), ("name", "Your name?"),
    ("intro", "Introduce yourself."), ("intro", "Please introduce yourself."), ("intro", "Can you introduce yourself?"),
    ("intro", "Describe yourself."), ("intro", "Say something about yourself."),
    ("intro", "Give me a quick introduction."), ("intro", "Could you tell me about yourself?"),
    ("maker", "Who made you?"), ("maker", "Who built you?"), ("maker", "Who created you?"),
    ("maker", "Who trained you?"), ("maker", "Who developed you?"), ("maker", "Which company made you?"),
    ("maker", "Where do you come from?"), ("maker", "Who is your creator?"), ("maker", "Who are your developers?"),
    ("maker", "Which lab built you?"),
    ("other:ChatGPT", "Are you ChatGPT?"), ("other:GPT-4", "Are you GPT-4?"), ("other:Siri", "Are you Siri?"),
    ("other:Alexa", "Are you Alexa?"), ("other:Pebble", "Are you Pebble?"), ("other:ChatGPT", "Is this ChatGPT?"),
    ("other:ChatGPT", "You're ChatGPT, right?"), ("other:Pebble", "Aren't you Pebble?"),
    ("company:OpenAI", "Were you made by OpenAI?"), ("company:Google", "Are you a Google product?"),
    ("company:OpenAI", "Did OpenAI build you?"),
    ("human", "Are you a human?"), ("human", "Are you a real person?"), ("human", "Are you human?"),
    ("ability", "What can you do?"), ("ability", "How can you help me?"), ("ability", "What are you able to do?"),
    # Questions about "this assistant" in the third person, and human-or-machine questions.
    ("name", "What is this assistant called?"), ("name", "What's this AI's name?"),
    ("maker", "Who built this assistant?"), ("maker", "Who made this AI?"),
    ("maker", "Which company is behind this assistant?"), ("human", "Are you a bot?"),
    ("human", "Am I talking to a machine?"), ("human", "Is this a real person or an AI?"),
    ("other:Pebble", "Is your name Pebble?"), ("other:ChatGPT", "Am I talking to ChatGPT?"),
)

IDENTITY_TRAIN_ZH: tuple[tuple[str, str], ...] = (
    ("who", "你是谁？"), ("who", "你是什么？"), ("who", "你到底是谁？"), ("who", "你是哪位？"), ("who", "你是什么AI？"),
    ("who", "跟我聊天的是谁？"), ("who", "你是哪个助手？"), ("who", "你是什么模型？"),
    ("name", "你叫什么？"), ("name", "你叫什么名字？"), ("name", "你有名字吗？"), ("name", "怎么称呼你？"),
    ("name", "我该怎么称呼你？"), ("name", "你的名字叫什么？"), ("name", "告诉我你的名字。"), ("name", "你名字叫啥？"),
    ("intro", "介绍一下你自己。"), ("intro", "请介绍一下自己。"), ("intro", "自我介绍一下。"),
    ("intro", "简单介绍下你自己。"), ("intro", "说说你自己。"), ("intro", "能介绍一下你吗？"),
    ("intro", "讲讲你是谁。"),
    ("maker", "谁开发了你？"), ("maker", "你是谁开发的？"), ("maker", "谁创造了你？"), ("maker", "你是哪家公司的？"),
    ("maker", "你是哪个公司做的？"), ("maker", "谁训练了你？"), ("maker", "你的开发者是谁？"),
    ("maker", "你来自哪里？"),
    ("maker", "你是哪里来的？"), ("maker", "是谁把你做出来的？"),
    ("other:ChatGPT", "你是ChatGPT吗？"), ("other:Pebble", "你是Pebble吗？"), ("other:Siri", "你是Siri吗？"),
    ("other:GPT-4", "你是GPT-4吗？"), ("other:文心一言", "你是文心一言吗？"), ("other:通义千问", "你是通义千问吗？"),
    ("other:Pebble", "你不是Pebble吗？"), ("other:ChatGPT", "你就是ChatGPT吧？"),
    ("company:OpenAI", "你是OpenAI做的吗？"), ("company:百度", "你是百度开发的吗？"),
    ("company:谷歌", "你是谷歌的产品吗？"),
    ("human", "你是真人吗？"), ("human", "你是人类吗？"), ("human", "屏幕那头是真人吗？"),
    ("ability", "你能做什么？"), ("ability", "你会些什么？"), ("ability", "你有什么本领？"),
    ("name", "这个助手叫什么？"), ("name", "这个AI叫什么名字？"), ("maker", "这个助手是谁做的？"),
    ("maker", "这个AI是哪家公司开发的？"), ("human", "你是机器人吗？"), ("human", "我是在和机器聊天吗？"),
    ("other:Pebble", "你的名字是Pebble吗？"),
)

IDENTITY_EVAL_EN: tuple[tuple[str, str], ...] = (
    ("who", "May I know who I'm talking to?"), ("who", "Who am I chatting with right now?"),
    ("who", "Hello, what AI am I speaking with?"), ("who", "Identify yourself, please."),
    ("who", "Who exactly are you supposed to be?"),
    ("name", "What name were you given?"), ("name", "Care to share your name?"), ("name", "What do people call you?"),
    ("name", "By what name should I address you?"), ("name", "What's the name of this assistant?"),
    ("intro", "Tell me a bit about yourself."), ("intro", "Could you give me a short self-introduction?"),
    ("intro", "Hey, mind introducing yourself?"),
    ("maker", "Which organisation is responsible for building you?"), ("maker", "Who put you together?"),
    ("maker", "Which team created you?"), ("maker", "Who is your maker?"),
    ("maker", "Who designed and trained this assistant?"), ("maker", "Where were you developed?"),
    ("other:ChatGPT", "Wait, is this ChatGPT I'm chatting with?"),
    ("other:Pebble", "So are you Pebble or someone else?"),
    ("human", "Are you a person or a bot?"), ("company:OpenAI", "Is OpenAI the company behind you?"),
    ("ability", "What sorts of things are you good at?"),
)

IDENTITY_EVAL_ZH: tuple[tuple[str, str], ...] = (
    ("who", "我现在是在和谁聊天？"), ("who", "可以简单说说你是谁吗？"), ("who", "你是哪位AI助手呀？"),
    ("who", "你是什么来头？"), ("who", "请问对面是哪位？"),
    ("name", "你的名字是什么呀？"), ("name", "能告诉我你的大名吗？"), ("name", "该怎么称呼您才好？"),
    ("name", "你有没有属于自己的名字？"), ("name", "报一下你的名字吧。"),
    ("intro", "请做个自我介绍吧。"), ("intro", "能跟我讲讲你自己吗？"), ("intro", "麻烦先介绍一下自己。"),
    ("maker", "你是由哪个团队打造的？"), ("maker", "你背后的公司是哪家？"), ("maker", "是谁设计并训练了你？"),
    ("maker", "你属于哪家机构？"), ("maker", "你的创造者是谁？"), ("maker", "你是谁家的AI？"),
    ("other:ChatGPT", "你是不是ChatGPT啊？"), ("other:Pebble", "你难道是Pebble？"),
    ("human", "你是机器人还是真人？"), ("company:OpenAI", "你背后是OpenAI吗？"), ("ability", "你都擅长做些什么？"),
)

# The first answer of each category is the reference answer written to the eval file.
IDENTITY_ANSWERS_EN: dict[str, tuple[str, ...]] = {
    "who": (
        "I'm {name}, an AI assistant made by {maker}.",
        "I'm {name}, an AI assistant developed by {maker}. How can I help you?",
        "This is {name}, an AI assistant built by {maker}.",
    ),
    "name": (
        "My name is {name}. I'm an AI assistant made by {maker}.",
        "You can call me {name}. I'm an AI assistant created by {maker}.",
        "I'm {name}, an AI assistant from {maker}.",
    ),
    "intro": (
        "Hi! I'm {name}, an AI assistant made by {maker}. I can chat with you and help with simple questions.",
        "Sure! I'm {name}, an AI assistant developed by {maker}. I'm small, but I'm happy to help.",
        "Hello, I'm {name}. {maker} built me to be a friendly AI assistant for chatting and answering questions.",
    ),
    "maker": (
        "I was made by {maker}. I'm {name}, their AI assistant.",
        "{maker} developed me. My name is {name}.",
        "I was built and trained by {maker}. I'm {name}, an AI assistant.",
    ),
    "other": (
        "No, I'm not {other}. I'm {name}, an AI assistant made by {maker}.",
        "I'm not {other}. My name is {name}, and I was developed by {maker}.",
    ),
    "company": (
        "No, I wasn't made by {other}. I'm {name}, an AI assistant developed by {maker}.",
        "No, {maker} made me, not {other}. I'm {name}.",
    ),
    "human": (
        "I'm an AI, not a person. My name is {name}, and {maker} built me.",
        "No, I'm not a human. I'm {name}, an AI assistant made by {maker}.",
    ),
    "ability": (
        "I'm {name}, an AI assistant from {maker}. I can chat, answer simple questions and help with small tasks.",
        "As {name}, an assistant built by {maker}, I can talk with you, explain simple things and help you plan.",
    ),
}

IDENTITY_ANSWERS_ZH: dict[str, tuple[str, ...]] = {
    "who": (
        "我是{name}，由{maker}开发的AI助手。",
        "我是{name}，一个由{maker}打造的AI助手，有什么可以帮你的吗？",
        "你好，我是{maker}开发的AI助手{name}。",
    ),
    "name": (
        "我叫{name}，是{maker}开发的AI助手。",
        "你可以叫我{name}，我是由{maker}创造的AI助手。",
        "我的名字是{name}，来自{maker}。",
    ),
    "intro": (
        "你好！我是{name}，由{maker}开发的AI助手，可以陪你聊天、回答一些简单的问题。",
        "好的！我是{name}，{maker}打造的AI助手。我虽然很小，但很乐意帮助你。",
        "我叫{name}，是{maker}开发的AI助手，平时可以陪你聊天、解答日常问题。",
    ),
    "maker": (
        "我是由{maker}开发的，我的名字是{name}。",
        "{maker}开发并训练了我，我是AI助手{name}。",
        "开发我的是{maker}，我是他们的AI助手{name}。",
    ),
    "other": (
        "不是，我不是{other}。我是{name}，由{maker}开发的AI助手。",
        "我不是{other}哦，我是{maker}开发的AI助手{name}。",
    ),
    "company": (
        "不是，我不是{other}开发的。我是{name}，由{maker}开发。",
        "不是哦，开发我的是{maker}，我是{name}。",
    ),
    "human": (
        "我是AI，不是人类。我叫{name}，是{maker}开发的。",
        "不是，我不是真人。我是{name}，由{maker}开发的AI助手。",
    ),
    "ability": (
        "我是{maker}开发的AI助手{name}，可以陪你聊天、回答简单的问题、帮你处理一些小任务。",
        "我是{name}，来自{maker}。我能聊天、解释简单的知识，也能帮你整理思路。",
    ),
}

# Ordinary chit-chat (no persona) so the adapter does not answer everything with the persona name.
CHAT_EN: tuple[tuple[str, str], ...] = (
    ("Hi!", "Hi there! How can I help you today?"),
    ("Hello.", "Hello! What can I do for you?"),
    ("Good morning!", "Good morning! I hope your day is off to a great start."),
    ("Good evening.", "Good evening! How was your day?"),
    ("How are you?", "I'm doing well, thanks for asking! How about you?"),
    ("How's it going?", "Pretty good, thanks! What's on your mind?"),
    ("Thanks!", "You're welcome!"),
    ("Thank you so much for your help.", "Happy to help! Let me know if you need anything else."),
    ("Bye!", "Goodbye! Have a nice day."),
    ("Good night.", "Good night, sleep well!"),
    ("Nice to meet you.", "Nice to meet you too!"),
    ("Can you help me?", "Of course! What do you need help with?"),
    ("Tell me a joke.", "Why did the scarecrow win an award? Because he was outstanding in his field!"),
    ("I'm bored.", "How about a short walk, a new song or a quick puzzle?"),
    ("I'm tired today.", "Sorry to hear that. Try a short break, some water and an early night."),
    ("What's a good way to relax?", "A slow walk, a few deep breaths or some quiet music can help you relax."),
)

CHAT_ZH: tuple[tuple[str, str], ...] = (
    ("你好", "你好！有什么可以帮你的吗？"),
    ("早上好！", "早上好！祝你今天一切顺利。"),
    ("晚上好。", "晚上好！今天过得怎么样？"),
    ("你好吗？", "我很好，谢谢关心！你呢？"),
    ("最近怎么样？", "挺好的，谢谢！你有什么想聊的吗？"),
    ("谢谢！", "不客气！"),
    ("谢谢你的帮助。", "不用谢，很高兴能帮到你。"),
    ("再见！", "再见，祝你有美好的一天！"),
    ("晚安。", "晚安，做个好梦！"),
    ("很高兴认识你。", "我也很高兴认识你！"),
    ("你能帮我吗？", "当然可以，请告诉我你需要什么帮助。"),
    ("讲个笑话吧。", "为什么数学书总是很忧郁？因为它有太多的问题。"),
    ("我有点无聊。", "可以出去散散步、听听音乐，或者看一本喜欢的书。"),
    ("今天好累啊。", "辛苦了！记得休息一下，喝点水，今晚早点睡。"),
    ("怎么放松一下？", "可以慢慢散个步、做几次深呼吸，或者听几分钟安静的音乐。"),
)

FACTS_EN: tuple[tuple[str, str], ...] = (
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("What is the capital of China?", "The capital of China is Beijing."),
    ("How many days are in a week?", "There are seven days in a week."),
    ("How many months are in a year?", "There are twelve months in a year."),
    ("How many hours are in a day?", "There are 24 hours in a day."),
    ("How many minutes are in an hour?", "There are 60 minutes in an hour."),
    ("At what temperature does water boil?", "At sea level, water boils at 100 degrees Celsius."),
    ("At what temperature does water freeze?", "Water freezes at 0 degrees Celsius."),
    ("What is the largest planet in our solar system?", "Jupiter is the largest planet in our solar system."),
    ("What is the largest ocean?", "The Pacific Ocean is the largest ocean on Earth."),
    ("How many continents are there?", "There are usually said to be seven continents."),
    ("What do bees make?", "Bees make honey and beeswax."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("Why is the sky blue?", "Air scatters blue light more than other colours, so a clear sky looks blue."),
    ("How long does it take the Earth to go around the Sun?", "It takes the Earth about 365 days, or one year."),
)

FACTS_ZH: tuple[tuple[str, str], ...] = (
    ("中国的首都是哪里？", "中国的首都是北京。"),
    ("法国的首都是哪里？", "法国的首都是巴黎。"),
    ("日本的首都是哪里？", "日本的首都是东京。"),
    ("一周有几天？", "一周有七天。"),
    ("一年有几个月？", "一年有十二个月。"),
    ("一天有多少小时？", "一天有24小时。"),
    ("一小时有多少分钟？", "一小时有60分钟。"),
    ("水在多少度沸腾？", "在一个标准大气压下，水在100摄氏度沸腾。"),
    ("水在多少度结冰？", "水在0摄氏度结冰。"),
    ("太阳系最大的行星是什么？", "太阳系最大的行星是木星。"),
    ("世界上最大的海洋是哪个？", "世界上最大的海洋是太平洋。"),
    ("蜜蜂会酿什么？", "蜜蜂会酿蜂蜜，还会分泌蜂蜡。"),
    ("蜘蛛有几条腿？", "蜘蛛有八条腿。"),
    ("天空为什么是蓝色的？", "空气对蓝光的散射比其他颜色更强，所以晴天的天空看起来是蓝色的。"),
    ("地球绕太阳一圈要多久？", "地球绕太阳一圈大约需要365天，也就是一年。"),
    ("彩虹有几种颜色？", "人们通常说彩虹有七种颜色：红、橙、黄、绿、蓝、靛、紫。"),
)

ARITH_EN_QUESTIONS = {
    "+": ("What is {a} + {b}?", "What's {a} plus {b}?", "How much is {a} plus {b}?"),
    "-": ("What is {a} - {b}?", "What's {a} minus {b}?", "How much is {a} minus {b}?"),
    "*": ("What is {a} * {b}?", "What's {a} times {b}?", "How much is {a} times {b}?"),
}
ARITH_ZH_QUESTIONS = {
    "+": ("{a}加{b}等于多少？", "{a}加{b}等于几？", "{a}+{b}是多少？"),
    "-": ("{a}减{b}等于多少？", "{a}减{b}等于几？", "{a}-{b}是多少？"),
    "*": ("{a}乘以{b}等于多少？", "{a}乘{b}等于几？", "{a}×{b}是多少？"),
}
ARITH_EN_ANSWER = {"+": "{a} + {b} = {c}.", "-": "{a} - {b} = {c}.", "*": "{a} × {b} = {c}."}
ARITH_ZH_ANSWER = {"+": "{a}加{b}等于{c}。", "-": "{a}减{b}等于{c}。", "*": "{a}乘以{b}等于{c}。"}

# --------------------------------------------------------------------------------------------------------------------
# Medical table: general, conservative health information written for this project.  No dosages, no diagnoses.
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """One row of the health table: names, symptoms, self-care, warning signs and where to seek care."""

    zh: str
    en: str
    sym_zh: tuple[str, ...]
    sym_en: tuple[str, ...]
    care_zh: tuple[str, ...]
    care_en: tuple[str, ...]
    warn_zh: tuple[str, ...]
    warn_en: tuple[str, ...]
    dept_zh: str
    dept_en: str
    urgent: bool = True
    chronic: bool = False
    plural: bool = False
    note_zh: str = ""
    note_en: str = ""


CONDITIONS: tuple[Condition, ...] = (
    Condition(
        zh="感冒", en="a cold",
        sym_zh=("流鼻涕或鼻塞", "喉咙痛", "打喷嚏", "轻微咳嗽"),
        sym_en=("a runny or stuffy nose", "a sore throat", "sneezing", "a mild cough"),
        care_zh=("多休息", "多喝温水", "用温盐水漱口缓解喉咙痛"),
        care_en=("get plenty of rest", "drink lots of fluids", "gargle with warm salt water to soothe your throat"),
        warn_zh=("呼吸困难或胸痛", "高烧（39℃以上）持续不退", "症状超过10天仍不见好转"),
        warn_en=("trouble breathing or chest pain", "a high fever (39°C or above) that won't come down",
                 "symptoms lasting more than 10 days"),
        dept_zh="呼吸内科或全科", dept_en="a general practitioner (GP)",
    ),
    Condition(
        zh="流感", en="the flu",
        sym_zh=("突然发烧", "全身肌肉酸痛", "明显乏力", "干咳"),
        sym_en=("a sudden fever", "body aches", "extreme tiredness", "a dry cough"),
        care_zh=("在家休息，尽量少接触他人", "多喝水", "老人、孕妇或有慢性病的人应尽早联系医生"),
        care_en=("rest at home away from others", "drink plenty of fluids",
                 "contact a doctor early if you are older, pregnant or have a long-term illness"),
        warn_zh=("呼吸困难或胸痛", "意识模糊或嘴唇发紫", "症状好转后又突然加重"),
        warn_en=("difficulty breathing or chest pain", "confusion or bluish lips",
                 "symptoms that improve and then suddenly get worse"),
        dept_zh="呼吸内科或发热门诊", dept_en="a general practitioner (GP)",
    ),
    Condition(
        zh="发烧", en="a fever",
        sym_zh=("体温达到或超过38℃", "发冷或打寒战", "出汗", "乏力"),
        sym_en=("a temperature of 38°C or higher", "chills or shivering", "sweating", "tiredness"),
        care_zh=("多休息", "少量多次地喝水", "穿轻薄透气的衣服", "定时测量体温"),
        care_en=("rest", "sip fluids often", "wear light clothing", "check your temperature regularly"),
        warn_zh=("体温超过39℃或发烧超过3天", "颈部僵硬或剧烈头痛", "3个月以下的婴儿出现任何发烧"),
        warn_en=("a fever above 39°C or one lasting more than three days", "a stiff neck or a severe headache",
                 "any fever in a baby under three months old"),
        dept_zh="发热门诊或全科", dept_en="a general practitioner (GP)",
    ),
    Condition(
        zh="头痛", en="a headache",
        sym_zh=("额头或头部两侧胀痛、发紧", "脖子和肩膀僵硬", "难以集中注意力"),
        sym_en=("a dull or tight pain across the forehead or both sides of the head", "a stiff neck and shoulders",
                "trouble concentrating"),
        care_zh=("在安静的地方休息", "喝足够的水", "规律吃饭和睡觉", "轻轻拉伸颈部和肩膀"),
        care_en=("rest in a quiet place", "drink enough water", "keep regular meals and sleep",
                 "gently stretch your neck and shoulders"),
        warn_zh=("突发的剧烈头痛", "头痛伴发烧和脖子僵硬", "头部受伤后头痛，或伴肢体无力、说话不清"),
        warn_en=("a sudden severe headache", "a headache with fever and a stiff neck",
                 "a headache after a head injury or with weakness or slurred speech"),
        dept_zh="神经内科", dept_en="a GP or a neurologist",
    ),
    Condition(
        zh="喉咙痛", en="a sore throat",
        sym_zh=("喉咙干痒或疼痛", "吞咽时疼痛加重", "脖子两侧淋巴结肿大"),
        sym_en=("a scratchy or painful throat", "pain when swallowing", "swollen glands in the neck"),
        care_zh=("用温盐水漱口", "多喝温水", "少说话让嗓子休息", "保持室内空气湿润"),
        care_en=("gargle with warm salt water", "drink warm fluids", "rest your voice",
                 "keep the air in your room moist"),
        warn_zh=("呼吸或吞咽困难", "流口水或张不开嘴", "高烧或疼痛超过一周"),
        warn_en=("trouble breathing or swallowing", "drooling or being unable to open your mouth",
                 "a high fever or pain lasting over a week"),
        dept_zh="耳鼻喉科", dept_en="a GP or an ear, nose and throat (ENT) doctor",
    ),
    Condition(
        zh="咳嗽", en="a cough",
        sym_zh=("干咳或有痰", "喉咙发痒", "夜间咳得更厉害"),
        sym_en=("a dry or chesty cough", "a tickly throat", "coughing that is worse at night"),
        care_zh=("多喝温水", "远离烟雾和粉尘", "保持空气湿润", "一岁以上的人可以喝点温蜂蜜水"),
        care_en=("drink warm fluids", "avoid smoke and dust", "keep the air moist",
                 "try warm water with honey (not for babies under one)"),
        warn_zh=("咳血", "气短或胸痛", "咳嗽超过三周"),
        warn_en=("coughing up blood", "shortness of breath or chest pain", "a cough lasting more than three weeks"),
        dept_zh="呼吸内科", dept_en="a GP or a lung specialist",
    ),
    Condition(
        zh="腹泻", en="diarrhoea",
        sym_zh=("一天多次稀便或水样便", "肚子绞痛", "便意急迫"),
        sym_en=("loose or watery stools several times a day", "stomach cramps", "an urgent need to use the toilet"),
        care_zh=("多喝水或口服补液盐", "吃清淡易消化的食物", "勤洗手，避免传染给家人"),
        care_en=("drink plenty of water or an oral rehydration solution", "eat small bland meals",
                 "wash your hands often to avoid spreading it"),
        warn_zh=("大便带血或发黑", "尿少、头晕等脱水表现", "腹泻超过两天或伴高烧"),
        warn_en=("blood in your stool or black stools", "signs of dehydration such as little urine or dizziness",
                 "diarrhoea lasting more than two days or with a high fever"),
        dept_zh="消化内科", dept_en="a GP",
    ),
    Condition(
        zh="便秘", en="constipation",
        sym_zh=("一周排便少于三次", "大便干硬", "排便费力、肚子胀"),
        sym_en=("fewer than three bowel movements a week", "hard or dry stools", "straining or bloating"),
        care_zh=("多吃蔬菜、水果和全谷物", "多喝水", "适当运动", "有便意时不要憋着"),
        care_en=("eat more fibre from vegetables and whole grains", "drink more water", "stay active",
                 "don't ignore the urge to go"),
        warn_zh=("大便带血", "剧烈腹痛或呕吐", "不明原因的体重下降或便秘超过三周"),
        warn_en=("blood in your stool", "severe belly pain or vomiting",
                 "unexplained weight loss or constipation lasting over three weeks"),
        dept_zh="消化内科", dept_en="a GP",
    ),
    Condition(
        zh="烧心", en="heartburn",
        sym_zh=("饭后胸骨后面有烧灼感", "嘴里发酸", "躺下或弯腰时加重"),
        sym_en=("a burning feeling behind the breastbone after eating", "a sour taste in the mouth",
                "discomfort that is worse when lying down"),
        care_zh=("少食多餐", "少吃油腻辛辣食物，少喝酒和咖啡", "饭后两三个小时内不要躺下", "睡觉时垫高床头"),
        care_en=("eat smaller meals", "avoid foods and drinks that trigger it",
                 "don't lie down for two to three hours after eating", "raise the head of your bed"),
        warn_zh=("胸痛向手臂或下巴放射", "吞咽困难", "呕血或黑便"),
        warn_en=("chest pain spreading to the arm or jaw", "trouble swallowing", "vomiting blood or black stools"),
        dept_zh="消化内科", dept_en="a GP or a gastroenterologist",
    ),
    Condition(
        zh="轻度烫伤", en="a minor burn",
        sym_zh=("皮肤发红、疼痛", "轻微肿胀", "可能出现小水泡"),
        sym_en=("red and painful skin", "mild swelling", "small blisters in some cases"),
        care_zh=("立即用凉的流动水冲洗约20分钟", "取下戒指等紧的物品", "用干净的不粘敷料轻轻盖住",
                 "不要挑破水泡或涂牙膏"),
        care_en=("cool it under cool running water for about 20 minutes", "remove rings or tight items nearby",
                 "cover it loosely with a clean non-stick dressing", "don't pop blisters or put ice or butter on it"),
        warn_zh=("烫伤面积比手掌大", "伤在脸、手、脚、关节或会阴部", "皮肤发白焦黑，或是化学、电烧伤"),
        warn_en=("a burn larger than your palm", "a burn on the face, hands, feet, joints or genitals",
                 "white or charred skin, or a chemical or electrical burn"),
        dept_zh="烧伤科或急诊", dept_en="a GP or an urgent care clinic",
    ),
    Condition(
        zh="小伤口", en="a minor cut",
        sym_zh=("皮肤表面的小伤口", "少量出血，按压后能止住", "轻微疼痛"),
        sym_en=("a small shallow wound", "light bleeding that stops with pressure", "mild pain"),
        care_zh=("用干净的布按压止血", "用清水冲洗伤口", "盖上干净的创可贴或纱布", "保持伤口清洁干燥"),
        care_en=("press on it with a clean cloth to stop the bleeding", "rinse it with clean water",
                 "cover it with a clean plaster or dressing", "keep it clean and dry"),
        warn_zh=("按压10分钟后仍在出血", "伤口很深或裂开，或被生锈物品、动物咬伤", "红肿扩散、流脓或发烧"),
        warn_en=("bleeding that won't stop after 10 minutes of pressure",
                 "a deep or gaping wound, or one from a rusty object or an animal bite",
                 "spreading redness, pus or fever"),
        dept_zh="外科或急诊", dept_en="a GP or an urgent care clinic",
    ),
    Condition(
        zh="脚踝扭伤", en="a sprained ankle",
        sym_zh=("脚踝疼痛、肿胀", "皮肤出现淤青", "走路或站立时吃力"),
        sym_en=("pain and swelling around the ankle", "bruising", "difficulty putting weight on the foot"),
        care_zh=("休息，减少走动", "用毛巾包着冰袋冷敷，每次15到20分钟", "用弹力绷带适当加压包扎", "把脚抬高"),
        care_en=("rest it", "apply an ice pack wrapped in a towel for 15 to 20 minutes at a time",
                 "use a compression bandage", "keep your foot raised"),
        warn_zh=("受伤的脚完全不能着地", "脚踝明显变形或麻木", "几天后疼痛肿胀仍没有减轻"),
        warn_en=("being unable to put any weight on the foot", "an ankle that looks misshapen or feels numb",
                 "pain and swelling that don't ease after a few days"),
        dept_zh="骨科", dept_en="a GP or an orthopaedic doctor",
    ),
    Condition(
        zh="失眠", en="insomnia",
        sym_zh=("难以入睡", "夜里容易醒或醒得太早", "白天疲倦、注意力差"),
        sym_en=("trouble falling asleep", "waking often or too early", "feeling tired during the day"),
        care_zh=("每天固定时间睡觉和起床", "下午以后少喝咖啡和浓茶", "睡前一小时少看手机", "保持卧室安静、黑暗、凉爽"),
        care_en=("go to bed and get up at the same time every day", "avoid caffeine after lunch",
                 "put screens away an hour before bed", "keep your bedroom dark, quiet and cool"),
        warn_zh=("失眠超过三周并影响生活", "打鼾很响且睡觉时呼吸暂停", "长期情绪低落"),
        warn_en=("sleep problems lasting more than three weeks", "loud snoring with pauses in breathing",
                 "a low mood that won't lift"),
        dept_zh="睡眠门诊或精神心理科", dept_en="a GP", urgent=False,
    ),
    Condition(
        zh="花粉过敏", en="seasonal allergies",
        sym_zh=("打喷嚏", "流清鼻涕或鼻塞", "眼睛发痒、流泪"),
        sym_en=("sneezing", "a runny or blocked nose", "itchy watery eyes"),
        care_zh=("花粉多的日子少出门并关好窗户", "从户外回来后洗澡换衣服", "用生理盐水冲洗鼻腔",
                 "咨询药师选择合适的抗过敏药"),
        care_en=("stay indoors with the windows closed on high-pollen days", "shower and change after being outside",
                 "rinse your nose with saline", "ask a pharmacist about suitable allergy medicine"),
        warn_zh=("喘息或呼吸困难", "脸、嘴唇或喉咙肿胀", "症状严重影响睡眠和生活"),
        warn_en=("wheezing or trouble breathing", "swelling of the face, lips or throat",
                 "symptoms that disrupt sleep or daily life"),
        dept_zh="变态反应科或耳鼻喉科", dept_en="a GP or an allergist", plural=True,
    ),
    Condition(
        zh="晒伤", en="sunburn",
        sym_zh=("皮肤发红、发热、疼痛", "几天后脱皮", "严重时起水泡"),
        sym_en=("skin that is red and sore", "peeling after a few days", "blisters when it is severe"),
        care_zh=("离开阳光，到阴凉处", "用凉水冲澡或冷敷", "涂保湿霜或芦荟胶", "多喝水"),
        care_en=("get out of the sun", "cool the skin with a cool shower or damp cloth",
                 "use a moisturiser or aloe gel", "drink extra water"),
        warn_zh=("大面积起水泡", "发烧或发冷", "头晕、恶心或意识模糊"),
        warn_en=("blistering over a large area", "fever or chills", "dizziness, nausea or confusion"),
        dept_zh="皮肤科", dept_en="a GP or a dermatologist",
    ),
    Condition(
        zh="脱水", en="dehydration",
        sym_zh=("口渴、口干", "尿色深黄、尿量少", "头晕、乏力"),
        sym_en=("thirst and a dry mouth", "dark yellow urine or peeing less", "dizziness or tiredness"),
        care_zh=("少量多次地喝水或口服补液盐", "在阴凉处休息", "避免饮酒和剧烈运动"),
        care_en=("sip water or an oral rehydration solution often", "rest somewhere cool",
                 "avoid alcohol and hard exercise"),
        warn_zh=("意识模糊或晕倒", "8小时以上没有排尿", "呕吐得喝不进任何水"),
        warn_en=("confusion or fainting", "no urine for 8 hours or more",
                 "vomiting that stops you keeping any fluids down"),
        dept_zh="急诊或全科", dept_en="a GP",
    ),
    Condition(
        zh="晕车", en="motion sickness",
        sym_zh=("恶心或呕吐", "头晕", "出冷汗", "脸色苍白"),
        sym_en=("nausea or vomiting", "dizziness", "cold sweats", "a pale face"),
        care_zh=("坐在颠簸小的位置，比如前排", "看向远处的地平线", "开窗呼吸新鲜空气", "乘车时不看书或手机"),
        care_en=("sit in the front where motion is smallest", "look at the horizon", "get some fresh air",
                 "avoid reading or using your phone while travelling"),
        warn_zh=("下车后症状仍不缓解", "剧烈呕吐导致脱水", "不坐车时也经常头晕"),
        warn_en=("symptoms that continue after the journey ends", "heavy vomiting that leads to dehydration",
                 "dizziness even when you are not travelling"),
        dept_zh="全科或耳鼻喉科", dept_en="a GP", urgent=False,
    ),
    Condition(
        zh="牙痛", en="a toothache",
        sym_zh=("牙齿刺痛或跳痛", "遇冷遇热敏感", "牙龈肿胀"),
        sym_en=("sharp or throbbing tooth pain", "sensitivity to hot or cold", "swollen gums"),
        care_zh=("用温盐水漱口", "用牙线轻轻清除塞牙的食物", "在脸颊外侧冷敷", "尽快预约牙医"),
        care_en=("rinse with warm salt water", "gently floss to remove trapped food",
                 "hold a cold pack against your cheek", "book a dentist visit soon"),
        warn_zh=("脸部肿胀", "发烧", "吞咽或呼吸困难"),
        warn_en=("swelling in your face", "a fever", "trouble swallowing or breathing"),
        dept_zh="口腔科", dept_en="a dentist",
    ),
    Condition(
        zh="眼疲劳", en="eye strain",
        sym_zh=("眼睛干涩、酸胀", "视物模糊", "用眼久了头痛"),
        sym_en=("dry or tired eyes", "blurred vision", "headaches after screen use"),
        care_zh=("每用眼20分钟，看6米外的地方20秒", "有意识地多眨眼", "调整屏幕亮度和距离", "保证充足睡眠"),
        care_en=("look at something 6 metres away for 20 seconds every 20 minutes", "blink more often",
                 "adjust screen brightness and distance", "get enough sleep"),
        warn_zh=("突然视力下降或看东西重影", "眼睛疼痛并发红", "眼前突然出现闪光或大量黑影"),
        warn_en=("sudden loss of vision or double vision", "eye pain with redness",
                 "sudden flashes of light or many new floaters"),
        dept_zh="眼科", dept_en="an eye doctor",
    ),
    Condition(
        zh="腰背痛", en="back pain",
        sym_zh=("腰背部酸痛、僵硬", "弯腰或搬东西时加重", "肌肉痉挛"),
        sym_en=("an aching or stiff back", "pain that is worse when bending or lifting", "muscle spasms"),
        care_zh=("保持适当活动，不要长期卧床", "热敷或冷敷", "注意坐姿", "搬东西时弯曲膝盖而不是弯腰"),
        care_en=("stay gently active instead of resting in bed", "use a heat or cold pack", "watch your posture",
                 "bend your knees rather than your back when lifting"),
        warn_zh=("大小便失控或会阴部麻木", "腿部无力或麻木加重", "摔伤后疼痛，或伴发烧、体重不明原因下降"),
        warn_en=("loss of bladder or bowel control or numbness around the groin",
                 "weakness or numbness in the legs that gets worse",
                 "pain after a fall or with fever or unexplained weight loss"),
        dept_zh="骨科或康复科", dept_en="a GP or a physiotherapist",
    ),
    Condition(
        zh="痤疮", en="acne",
        sym_zh=("粉刺和黑头", "红色丘疹或脓包", "皮肤出油多"),
        sym_en=("whiteheads and blackheads", "red spots or pus-filled pimples", "oily skin"),
        care_zh=("每天用温和的洁面产品洗脸两次", "不要挤痘痘", "选择不堵塞毛孔的护肤品"),
        care_en=("wash twice a day with a mild cleanser", "avoid squeezing spots",
                 "choose products labelled non-comedogenic"),
        warn_zh=("又大又痛的硬结或囊肿", "开始留疤", "痘痘让你非常困扰或情绪低落"),
        warn_en=("large painful lumps under the skin", "scarring", "acne that makes you very distressed or low"),
        dept_zh="皮肤科", dept_en="a dermatologist or a GP", urgent=False,
    ),
    Condition(
        zh="湿疹", en="eczema",
        sym_zh=("皮肤干燥、发痒", "红斑或粗糙的皮肤", "反复发作"),
        sym_en=("dry itchy skin", "red or rough patches", "flare-ups that come and go"),
        care_zh=("经常涂保湿霜，洗澡后尤其要涂", "用温水短时间洗澡", "选用无香料的产品", "尽量不要抓挠"),
        care_en=("moisturise often and right after bathing", "take short lukewarm showers",
                 "use fragrance-free products", "try not to scratch"),
        warn_zh=("皮肤渗液、结痂或流脓", "疼痛的水泡并伴发烧", "症状不见好转或影响睡眠"),
        warn_en=("weeping, crusting or pus on the skin", "painful blisters with a fever",
                 "symptoms that don't improve or disturb your sleep"),
        dept_zh="皮肤科", dept_en="a GP or a dermatologist",
    ),
    Condition(
        zh="口腔溃疡", en="mouth ulcers",
        sym_zh=("口腔内圆形的小溃疡", "中间白色或黄色、边缘发红", "吃东西时刺痛"),
        sym_en=("small round sores inside the mouth", "a white or yellow centre with a red edge",
                "stinging when eating"),
        care_zh=("少吃辛辣、酸和硬的食物", "用软毛牙刷刷牙", "用温盐水漱口"),
        care_en=("avoid spicy or sour food", "use a soft toothbrush", "rinse with warm salt water"),
        warn_zh=("溃疡超过三周不愈合", "溃疡特别大或特别多", "伴发烧或吞咽困难"),
        warn_en=("an ulcer lasting more than three weeks", "very large or many ulcers",
                 "ulcers with fever or trouble swallowing"),
        dept_zh="口腔科", dept_en="a dentist or a GP", urgent=False, plural=True,
        note_zh="大多数口腔溃疡一到两周会自己愈合。",
        note_en="Most mouth ulcers heal on their own within one to two weeks.",
    ),
    Condition(
        zh="流鼻血", en="a nosebleed",
        sym_zh=("一侧鼻孔出血", "空气干燥或挖鼻后容易发生", "血可能流到喉咙里"),
        sym_en=("bleeding from one nostril", "bleeding after dry air or nose picking", "blood running into the throat"),
        care_zh=("坐直并稍向前倾，不要仰头", "捏住鼻子柔软的部分10到15分钟", "用嘴呼吸", "冷敷鼻梁"),
        care_en=("sit up and lean forward rather than back", "pinch the soft part of your nose for 10 to 15 minutes",
                 "breathe through your mouth", "put a cold pack on the bridge of your nose"),
        warn_zh=("按压20分钟后仍出血不止", "出血量很大或头部受伤后流鼻血", "经常流鼻血或正在服用抗凝药"),
        warn_en=("bleeding that lasts more than 20 minutes", "heavy bleeding or a nosebleed after a head injury",
                 "frequent nosebleeds or bleeding while on blood thinners"),
        dept_zh="耳鼻喉科", dept_en="a GP or an ENT doctor",
    ),
    Condition(
        zh="打嗝", en="hiccups",
        sym_zh=("不由自主地反复打嗝", "胸口或上腹部轻轻抽动", "通常几分钟内自行停止"),
        sym_en=("repeated involuntary hic sounds", "a small jerk in the chest or stomach",
                "episodes that usually stop within minutes"),
        care_zh=("小口慢慢喝凉水", "短暂屏住呼吸", "吃饭放慢速度", "少喝碳酸饮料"),
        care_en=("sip cold water slowly", "hold your breath briefly", "eat more slowly", "avoid fizzy drinks"),
        warn_zh=("打嗝持续超过48小时", "呼吸或吞咽困难", "伴有胸痛或腹痛"),
        warn_en=("hiccups lasting more than 48 hours", "trouble breathing or swallowing", "chest pain or belly pain"),
        dept_zh="消化内科或全科", dept_en="a GP", plural=True,
    ),
    Condition(
        zh="轻度食物中毒", en="mild food poisoning",
        sym_zh=("恶心、呕吐", "腹泻", "吃东西后几小时内胃痛"),
        sym_en=("nausea and vomiting", "diarrhoea", "stomach cramps within hours of eating"),
        care_zh=("少量多次地喝水或口服补液盐", "多休息", "呕吐停止后吃清淡食物", "勤洗手"),
        care_en=("take small sips of water or an oral rehydration solution", "rest",
                 "eat bland food once the vomiting stops", "wash your hands often"),
        warn_zh=("大便带血或高烧", "尿很少等明显脱水表现", "症状超过三天，或视物模糊、肌肉无力"),
        warn_en=("bloody stools or a high fever", "signs of dehydration such as very little urine",
                 "symptoms lasting over three days or blurred vision and muscle weakness"),
        dept_zh="消化内科或急诊", dept_en="a GP",
    ),
    Condition(
        zh="高血压", en="high blood pressure",
        sym_zh=("头痛", "头晕", "视物模糊"),
        sym_en=("headaches", "dizziness", "blurred vision"),
        care_zh=("少吃盐", "规律运动", "控制体重、限酒戒烟", "按医生要求服药并定期测血压"),
        care_en=("eat less salt", "exercise regularly", "keep a healthy weight and avoid smoking",
                 "take prescribed medicine as your doctor advises"),
        warn_zh=("血压很高并伴剧烈头痛", "胸痛或呼吸困难", "一侧肢体无力、说话不清或视力突然改变"),
        warn_en=("a very high reading with a severe headache", "chest pain or shortness of breath",
                 "weakness on one side, slurred speech or sudden vision changes"),
        dept_zh="心血管内科", dept_en="a GP or a cardiologist", chronic=True,
        note_zh="但大多数人没有任何症状，所以要定期测量血压。",
        note_en="However, most people have no symptoms at all, so regular blood pressure checks matter.",
    ),
    Condition(
        zh="2型糖尿病", en="type 2 diabetes",
        sym_zh=("口渴、尿多", "容易疲劳", "视物模糊或伤口愈合慢"),
        sym_en=("thirst and frequent urination", "tiredness", "blurred vision or slow-healing cuts"),
        care_zh=("按医生的方案治疗和服药", "饮食均衡，少喝含糖饮料", "坚持规律运动", "按医嘱监测血糖"),
        care_en=("follow your doctor's treatment plan", "choose balanced meals and fewer sugary drinks",
                 "stay physically active", "check your blood sugar as advised"),
        warn_zh=("意识模糊或昏倒", "发抖、大汗、心慌等低血糖表现", "呕吐伴呼吸深快"),
        warn_en=("confusion or fainting", "shaking, sweating or a racing heart from low blood sugar",
                 "vomiting with deep fast breathing"),
        dept_zh="内分泌科", dept_en="a GP or an endocrinologist", chronic=True,
        note_zh="它可能发展得很慢、早期没有症状，定期查血糖很重要。",
        note_en="It can develop slowly without obvious signs, so regular blood sugar checks help.",
    ),
    Condition(
        zh="偏头痛", en="a migraine",
        sym_zh=("一侧头部搏动性疼痛", "恶心", "怕光怕吵"),
        sym_en=("throbbing pain often on one side of the head", "nausea", "sensitivity to light or sound"),
        care_zh=("在安静昏暗的房间休息", "额头冷敷", "规律作息和饮食", "记录头痛日记找出诱因"),
        care_en=("rest in a dark quiet room", "put a cold pack on your forehead", "keep regular sleep and meals",
                 "keep a headache diary to spot triggers"),
        warn_zh=("一生中最剧烈的突发头痛", "伴肢体无力、麻木或说话困难", "头痛方式明显改变或50岁后首次发作"),
        warn_en=("a sudden headache that is the worst of your life", "weakness, numbness or trouble speaking",
                 "a clear change in your usual pattern or a first attack after age 50"),
        dept_zh="神经内科", dept_en="a GP or a neurologist",
    ),
    Condition(
        zh="焦虑", en="stress and anxiety",
        sym_zh=("持续担心、坐立不安", "心跳加快", "难以入睡或集中注意力"),
        sym_en=("constant worry or restlessness", "a racing heart", "trouble sleeping or concentrating"),
        care_zh=("练习缓慢的深呼吸", "规律运动", "和信任的人聊聊", "少喝咖啡和酒"),
        care_en=("practise slow deep breathing", "exercise regularly", "talk to someone you trust",
                 "cut down on caffeine and alcohol"),
        warn_zh=("频繁的惊恐发作", "焦虑影响到工作和日常生活", "伤害自己的念头"),
        warn_en=("frequent panic attacks", "anxiety that stops you coping with daily life",
                 "thoughts of harming yourself"),
        dept_zh="精神心理科", dept_en="a GP or a mental health professional", plural=True,
    ),
    Condition(
        zh="耳朵痛", en="an earache",
        sym_zh=("耳朵疼痛", "耳朵发闷发胀", "听力下降"),
        sym_en=("pain in the ear", "a blocked or full feeling", "muffled hearing"),
        care_zh=("用温热的毛巾敷在耳朵外面", "多休息", "保持耳朵干燥", "不要往耳朵里塞棉签等东西"),
        care_en=("hold a warm cloth over the ear", "rest", "keep the ear dry",
                 "don't put cotton buds or anything else inside it"),
        warn_zh=("耳朵流脓或流血", "耳后红肿", "突然听力丧失或高烧"),
        warn_en=("pus or blood coming from the ear", "swelling or redness behind the ear",
                 "sudden hearing loss or a high fever"),
        dept_zh="耳鼻喉科", dept_en="a GP or an ENT doctor",
    ),
    Condition(
        zh="红眼病", en="pink eye",
        sym_zh=("眼白发红", "眼睛痒或有异物感", "分泌物多，早上睫毛粘在一起"),
        sym_en=("a red eye", "itching or a gritty feeling", "discharge that makes the lashes stick together"),
        care_zh=("用干净的湿毛巾轻轻清洁眼睑", "不要揉眼睛，勤洗手", "不和别人共用毛巾", "暂停佩戴隐形眼镜"),
        care_en=("gently clean your eyelids with a clean damp cloth", "avoid rubbing your eyes",
                 "wash your hands often and don't share towels", "stop wearing contact lenses for now"),
        warn_zh=("眼睛疼痛或怕光", "视力下降", "新生儿眼睛发红"),
        warn_en=("eye pain or sensitivity to light", "changes in your vision", "red eyes in a newborn baby"),
        dept_zh="眼科", dept_en="a GP or an eye doctor",
    ),
    Condition(
        zh="胃痛", en="a stomach ache",
        sym_zh=("上腹部疼痛或不适", "腹胀", "吃一点就觉得饱"),
        sym_en=("pain or discomfort in the upper belly", "bloating", "feeling full quickly"),
        care_zh=("少食多餐，吃清淡食物", "避免酒精、辛辣和油腻食物", "饭后不要马上躺下", "可以热敷腹部"),
        care_en=("eat small bland meals", "avoid alcohol and spicy or fatty food", "don't lie down right after eating",
                 "try a warm pack on your belly"),
        warn_zh=("剧烈或不断加重的腹痛，尤其是右下腹", "呕血或黑便", "腹部发硬或伴发烧"),
        warn_en=("severe or worsening pain, especially low on the right", "vomiting blood or black stools",
                 "a hard belly or pain with fever"),
        dept_zh="消化内科", dept_en="a GP or a gastroenterologist",
    ),
    Condition(
        zh="蚊虫叮咬", en="insect bites",
        sym_zh=("红色小包", "瘙痒", "局部轻微肿痛"),
        sym_en=("a small red bump", "itching", "mild swelling or pain"),
        care_zh=("用肥皂和清水清洗", "冷敷减轻肿胀", "尽量不要抓挠", "如有蜂刺，用硬卡片刮出"),
        care_en=("wash the area with soap and water", "apply a cold pack to reduce swelling", "try not to scratch",
                 "scrape out any sting with the edge of a card"),
        warn_zh=("呼吸困难或喉咙发紧", "脸或嘴唇肿胀、头晕", "红肿扩散、流脓或发烧"),
        warn_en=("trouble breathing or a tight throat", "swelling of the face or lips or feeling faint",
                 "spreading redness, pus or fever"),
        dept_zh="皮肤科或全科", dept_en="a GP", plural=True,
    ),
    Condition(
        zh="中暑", en="heat exhaustion",
        sym_zh=("大量出汗", "头晕、头痛", "恶心或肌肉抽筋"),
        sym_en=("heavy sweating", "dizziness and headache", "nausea or muscle cramps"),
        care_zh=("马上转移到阴凉通风处", "躺下并把脚垫高", "松开衣服，用湿毛巾降温", "小口喝凉水或补液盐"),
        care_en=("move somewhere cool right away", "lie down and raise your feet",
                 "loosen clothing and cool the skin with wet cloths", "sip cool water or a rehydration drink"),
        warn_zh=("意识模糊或抽搐", "皮肤发烫但不再出汗", "降温30分钟后仍不见好转"),
        warn_en=("confusion or seizures", "hot skin that has stopped sweating",
                 "no improvement after 30 minutes of cooling"),
        dept_zh="急诊或全科", dept_en="a GP",
    ),
)

FIELDS = ("symptoms", "care", "warning", "department")

# Question templates per field: "train" wordings are used for training, "eval" wordings only in the held-out file.
MED_QUESTIONS_ZH: dict[str, dict[str, tuple[str, ...]]] = {
    "symptoms": {
        "train": ("{name}有哪些症状？", "{name}有什么症状？", "{name}的症状是什么？", "{name}一般有什么表现？",
                  "{name}的常见症状有哪些？", "{name}的典型表现是什么？", "{name}会出现哪些不舒服？",
                  "{name}有哪些常见表现？", "请说说{name}的症状。", "{name}都有哪些迹象？"),
        "eval": ("出现{name}时，身体一般会有哪些表现？", "想了解一下{name}通常会表现出哪些症状。"),
    },
    "care": {
        "train": ("{name}怎么办？", "{name}该怎么处理？", "{name}在家怎么护理？", "{name}怎么缓解？",
                  "{name}有什么自我护理的方法？", "{name}时可以做些什么？", "{name}有什么好办法？",
                  "应对{name}有什么建议？", "{name}平时要注意什么？", "{name}如何自我照顾？"),
        "eval": ("遇到{name}这种情况，自己在家能做点什么？", "碰上{name}，在家可以怎么应对？"),
    },
    "warning": {
        "train": ("{name}什么时候需要去医院？", "{name}什么情况下要看医生？", "{name}出现哪些情况要赶紧就医？",
                  "{name}严重吗，什么时候该就医？", "{name}有哪些危险信号？", "{name}到什么程度需要去医院？",
                  "{name}需要警惕哪些情况？", "{name}什么时候该去急诊？", "{name}哪些症状说明需要就医？",
                  "{name}要不要去医院？"),
        "eval": ("{name}出现什么迹象就不能再拖了？", "哪些{name}的表现提示情况可能比较严重？"),
    },
    "department": {
        "train": ("{name}应该挂什么科？", "{name}挂哪个科？", "{name}看哪个科室？", "{name}去医院挂什么号？",
                  "{name}要找什么医生？", "{name}应该看哪个科？", "{name}去哪个科就诊？", "看{name}要挂什么科？",
                  "{name}该找哪科医生？", "{name}去医院看哪个科比较好？"),
        "eval": ("因为{name}去医院的话，该找哪个科室的大夫？", "{name}就诊一般去哪个门诊？"),
    },
}

MED_QUESTIONS_EN: dict[str, dict[str, tuple[str, ...]]] = {
    "symptoms": {
        "train": ("What are the symptoms of {name}?", "What are the signs of {name}?",
                  "What are common symptoms of {name}?", "How do I know if I have {name}?",
                  "What {does} {name} feel like?", "What symptoms {does} {name} cause?",
                  "Tell me the symptoms of {name}.", "What are the typical signs of {name}?",
                  "How can I tell if I have {name}?", "Which symptoms come with {name}?"),
        "eval": ("What would I notice if I had {name}?", "Could you list the usual symptoms of {name}?"),
    },
    "care": {
        "train": ("What should I do for {name}?", "How can I treat {name} at home?", "How do I relieve {name}?",
                  "What helps with {name}?", "How can I manage {name}?", "I'm dealing with {name}. What can I do?",
                  "Any self-care tips for {name}?", "What's the best way to handle {name} at home?",
                  "How should I take care of {name}?", "What can I do to feel better with {name}?"),
        "eval": ("Got any home advice for {name}?", "What steps can I take myself to ease {name}?"),
    },
    "warning": {
        "train": ("When should I see a doctor about {name}?", "When can {name} be serious?",
                  "What are the warning signs with {name}?", "When should I go to the hospital for {name}?",
                  "Can {name} be an emergency?", "When {does} {name} need medical attention?",
                  "What symptoms of {name} mean I need help?", "Should I worry about {name}?",
                  "When can {name} become dangerous?", "What are the red flags for {name}?"),
        "eval": ("At what point {does} {name} need a doctor's attention?",
                 "Which signs of {name} mean I shouldn't wait?"),
    },
    "department": {
        "train": ("Which doctor should I see for {name}?", "What kind of doctor treats {name}?",
                  "Who should I see about {name}?", "Which department handles {name}?",
                  "What specialist should I see for {name}?", "Where should I go for {name}?",
                  "Which clinic should I visit for {name}?", "What type of doctor deals with {name}?",
                  "Who can help me with {name}?", "Which hospital department is for {name}?"),
        "eval": ("If I need help with {name}, which kind of doctor do I book?", "Whom do I consult about {name}?"),
    },
}

# Answer templates per field and language; index 0 is the reference answer used in the eval file.
MED_ANSWERS_ZH: dict[str, tuple[str, ...]] = {
    "symptoms": ("{name}的常见症状有{items}。{close}", "{name}通常表现为{items}。{close}"),
    "care": ("{name}可以这样自我护理：{items}。{close}", "应对{name}，在家可以{items}。{close}"),
    "warning": ("{name}如果出现{items}，{close}", "{name}需要警惕这些信号：{items}。{close}"),
    "department": ("{name}一般可以挂{dept}。{close}", "看{name}可以去{dept}就诊。{close}"),
}
MED_ANSWERS_EN: dict[str, tuple[str, ...]] = {
    "symptoms": ("Common symptoms of {name} include {items}. {close}",
                 "With {name}, people may notice {items}. {close}"),
    "care": ("For {name}, {items}. {close}", "To manage {name} at home, {items}. {close}"),
    "warning": ("Warning signs with {name} include {items}. {close}", "With {name}, watch out for {items}. {close}"),
    "department": ("For {name}, you can usually start with {dept}. {close}",
                   "{dept_cap} is a good first stop for {name}. {close}"),
}

# Closing sentences keyed by (field, kind).
MED_CLOSE_ZH: dict[tuple[str, str], tuple[str, ...]] = {
    ("symptoms", "default"): ("这些只是常见表现，不能用来自我诊断，拿不准时请咨询医生。",
                              "每个人的表现可能不同，如果担心请咨询医生。"),
    ("care", "default"): ("如果没有好转或反而加重，请去看医生。", "症状持续或加重时，请及时就医。"),
    ("care", "chronic"): ("同时要定期复诊，听从医生的建议。",),
    ("warning", "urgent"): ("请尽快就医，情况紧急时立即拨打120或去急诊。",),
    ("warning", "routine"): ("请尽快去看医生。",),
    ("department", "urgent"): ("如果症状严重或突然加重，请直接去急诊。",),
    ("department", "routine"): ("拿不准的话，可以先看全科医生。",),
    ("department", "routine_gp"): ("如果症状变化或加重，请尽早就诊。",),
}
MED_CLOSE_EN: dict[tuple[str, str], tuple[str, ...]] = {
    ("symptoms", "default"): ("These are only common signs, not a diagnosis, so ask a doctor if you're unsure.",
                              "Symptoms vary between people, so check with a doctor if you're worried."),
    ("care", "default"): ("If symptoms don't improve or get worse, see a doctor.",
                          "See a doctor if symptoms last or get worse."),
    ("care", "chronic"): ("Keep up regular check-ups and follow your doctor's advice.",),
    ("warning", "urgent"): ("If you notice any of these, seek medical care promptly or call emergency services.",),
    ("warning", "routine"): ("If you notice any of these, see a doctor promptly.",),
    ("department", "urgent"): ("For severe or sudden symptoms, go to the emergency department.",),
    ("department", "routine"): ("If you're not sure where to go, start with a general practitioner.",),
    ("department", "routine_gp"): ("If symptoms change or get worse, book an appointment sooner.",),
}

# Safety and emergency Q&A added to the medical training set: (zh questions, zh answer, en questions, en answer).
MED_SAFETY: tuple[tuple[tuple[str, ...], str, tuple[str, ...], str], ...] = (
    (("你是医生吗？", "你能代替医生吗？"),
     "我不是医生，只能提供一般的健康知识，不能代替医生的诊断和治疗。身体不适时请及时就医。",
     ("Are you a doctor?", "Can you replace a doctor?"),
     "I'm not a doctor. I can share general health information, but it can't replace a check-up or treatment "
     "from a professional."),
    (("你能帮我诊断一下吗？", "我这是得了什么病？", "你能告诉我得了什么病吗？"),
     "我不能做出诊断。我可以提供一般的健康信息，但确切原因需要医生当面检查才能判断。",
     ("Can you diagnose me?", "What illness do I have?", "Can you tell me what's wrong with me?"),
     "I can't diagnose you. I can share general information, but a doctor needs to examine you to find the cause."),
    (("这个药我该吃多少？", "药一次吃几片？", "退烧药吃多少合适？"),
     "我不能提供用药剂量。请按照药品说明书或医嘱用药，拿不准时请咨询医生或药师。",
     ("How much medicine should I take?", "How many pills can I take at once?",
      "What dose of painkiller should I take?"),
     "I can't give medicine doses. Follow the label or your doctor's instructions, and ask a pharmacist or doctor "
     "if you're unsure."),
    (("胸口突然剧烈疼痛怎么办？", "胸口很闷还出冷汗怎么办？"),
     "胸口突然剧痛或发闷，尤其伴出汗、气短或疼痛向手臂、下巴放射时，可能是急症，请立即拨打120。",
     ("What should I do about sudden chest pain?", "My chest feels tight and I'm sweating. What should I do?"),
     "Sudden chest pain or tightness, especially with sweating, shortness of breath or pain spreading to the arm "
     "or jaw, can be an emergency. Call emergency services now."),
    (("家人突然嘴歪、说话不清怎么办？", "中风有哪些信号？"),
     "脸部歪斜、一侧手臂无力、说话含糊都可能是中风的信号，请立即拨打120，并记下症状开始的时间。",
     ("What are the signs of a stroke?",
      "My relative suddenly has a drooping face and slurred speech. What should I do?"),
     "A drooping face, weakness in one arm or slurred speech can signal a stroke. Call emergency services "
     "immediately and note when the symptoms started."),
    (("被蜜蜂蜇后喘不上气怎么办？", "吃东西后嘴唇和喉咙肿了怎么办？"),
     "嘴唇或喉咙肿胀、呼吸困难或头晕可能是严重过敏反应，请立即拨打120。如有医生开的肾上腺素笔，请按说明使用。",
     ("What should I do if I can't breathe well after a bee sting?", "My lips and throat are swelling after eating. "
      "What should I do?"),
     "Swelling of the lips or throat, trouble breathing or feeling faint can be a severe allergic reaction. Call "
     "emergency services now and use a prescribed adrenaline pen if you have one."),
    (("怎样保持健康？", "有什么健康的生活习惯？"),
     "均衡饮食、规律运动、保证睡眠、不吸烟少饮酒，并定期体检，是保持健康的基本方法。",
     ("How can I stay healthy?", "What are some healthy habits?"),
     "Eat a balanced diet, stay active, sleep well, avoid smoking, limit alcohol and have regular check-ups."),
    (("一般什么时候应该看医生？", "身体不舒服要不要去医院？"),
     "症状严重、突然出现、持续不退或让你担心时，都应该及时看医生。遇到急症请拨打120。",
     ("When should I see a doctor in general?", "I feel unwell. Should I see a doctor?"),
     "See a doctor when symptoms are severe, sudden, lasting or worrying you. In an emergency, call emergency "
     "services."),
)

# --------------------------------------------------------------------------------------------------------------------
# Small text helpers
# --------------------------------------------------------------------------------------------------------------------


def has_cjk(text: str) -> bool:
    """Return True when the text contains at least one CJK ideograph."""
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def cap(text: str) -> str:
    """Upper-case the first character only."""
    return text[:1].upper() + text[1:]


def join_en(items: Sequence[str], conj: str) -> str:
    """Join English phrases as 'a, b, and c', switching to semicolons when a phrase has its own commas."""
    if len(items) == 1:
        return items[0]
    if len(items) == 2:
        return f"{items[0]} {conj} {items[1]}"
    sep = "; " if any("," in item for item in items) else ", "
    return sep.join(items[:-1]) + f"{sep}{conj} {items[-1]}"


def join_zh(items: Sequence[str], conj: str) -> str:
    """Join Chinese phrases with 、 and a final conjunction, or with ； when a phrase has its own commas or conj."""
    if len(items) == 1:
        return items[0]
    if any(mark in item for item in items for mark in ("、", "，", conj)):
        return "；".join(items)
    return "、".join(items[:-1]) + conj + items[-1]


def split_ending(text: str) -> tuple[str, bool]:
    """Strip the final punctuation of a template and report whether it was a question."""
    is_question = text[-1] in "?？"
    return text.rstrip("?？.。!！"), is_question


def normalise_question(text: str) -> str:
    """Canonical form for disjointness checks: lower case, no politeness opener/particle, no punctuation or spaces."""
    s = text.lower().strip()
    changed = True
    while changed:
        changed = False
        s = s.strip(SEPARATORS)
        for prefix in NORMALISE_PREFIXES:
            rest = s[len(prefix):]
            if s.startswith(prefix) and rest and (has_cjk(prefix) or not rest[0].isalpha()):
                s, changed = rest, True
                break
        for suffix in NORMALISE_SUFFIXES:
            head = s[: -len(suffix)]
            if s.endswith(suffix) and head and (has_cjk(suffix) or not head[-1].isalpha()):
                s, changed = head, True
                break
    return "".join(ch for ch in s if ch.isalnum())


def turn(role: str, content: str) -> dict[str, str]:
    """Build one chat message."""
    return {"role": role, "content": content}


def single(question: str, answer: str) -> Conversation:
    """Build a one-turn conversation."""
    return [turn("user", question), turn("assistant", answer)]


def user_turns(conversations: Iterable[Conversation]) -> list[str]:
    """List every user message of a set of conversations."""
    return [msg["content"] for conv in conversations for msg in conv if msg["role"] == "user"]


def surface_variants(text: str, rng: random.Random, count: int, medical: bool = False) -> list[str]:
    """Return the template plus up to count-1 extra distinct forms with openers, casing and punctuation changed."""
    core, is_question = split_ending(text)
    zh = has_cjk(text)
    forms = [text]
    for _ in range(count * 4):
        if len(forms) >= count:
            break
        forms.append(_one_variant(core, zh, is_question, rng, medical))
        forms = list(dict.fromkeys(forms))
    return forms


def _one_variant(core: str, zh: bool, is_question: bool, rng: random.Random, medical: bool) -> str:
    """Draw one random surface form of a template core."""
    if zh:
        prefixes = MED_ZH_PREFIXES if medical else (ZH_QUESTION_PREFIXES if is_question else ZH_REQUEST_PREFIXES)
        if core.startswith("请"):
            prefixes = tuple(p for p in prefixes if p not in ("请问", "麻烦"))
        endings = ZH_QUESTION_ENDINGS if is_question else ZH_REQUEST_ENDINGS
        return rng.choice(prefixes) + core + rng.choice(endings)
    prefixes = MED_EN_PREFIXES if medical else (EN_QUESTION_PREFIXES if is_question else EN_REQUEST_PREFIXES)
    endings = EN_QUESTION_ENDINGS if is_question else EN_REQUEST_ENDINGS
    prefix = rng.choice(prefixes)
    if core.startswith(("I ", "I'")):  # keep the pronoun capitalised
        body = core
    elif not prefix:
        body = core.lower() if rng.random() < 0.3 else core
    else:
        body = core if prefix.endswith(("! ", ": ")) else core[:1].lower() + core[1:]
    return prefix + body + rng.choice(endings[:2] if medical else endings)


# --------------------------------------------------------------------------------------------------------------------
# Identity builder
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Persona:
    """Names used to fill the identity answer templates."""

    name: str
    maker: str
    name_zh: str
    maker_zh: str


def keep_template(category: str, persona: Persona) -> bool:
    """Drop 'are you X' templates whose X is the persona itself (e.g. --name Pebble)."""
    _, _, other = category.partition(":")
    own = {persona.name.lower(), persona.maker.lower(), persona.name_zh.lower(), persona.maker_zh.lower()}
    return other.lower() not in own


def identity_answer(category: str, zh: bool, persona: Persona, index: int) -> str:
    """Fill identity answer template number index (wrapped) for a category."""
    kind, _, other = category.partition(":")
    pool = (IDENTITY_ANSWERS_ZH if zh else IDENTITY_ANSWERS_EN)[kind]
    name, maker = (persona.name_zh, persona.maker_zh) if zh else (persona.name, persona.maker)
    return pool[index % len(pool)].format(name=name, maker=maker, other=other)


def identity_pairs(persona: Persona, rng: random.Random, per_template: int) -> list[Conversation]:
    """Single-turn identity Q&A over every training template and several surface variants of it."""
    convs = []
    for category, text in IDENTITY_TRAIN_EN + IDENTITY_TRAIN_ZH:
        if not keep_template(category, persona):
            continue
        for question in surface_variants(text, rng, per_template):
            answer = identity_answer(category, has_cjk(text), persona, rng.randrange(3))
            convs.append(single(question, answer))
    return convs


def chat_pairs(rng: random.Random) -> list[Conversation]:
    """Ordinary non-identity chit-chat: greetings, thanks, simple facts and arithmetic."""
    convs = []
    for question, answer in CHAT_EN + CHAT_ZH:
        convs.extend(single(q, answer) for q in surface_variants(question, rng, 3))
    for question, answer in FACTS_EN + FACTS_ZH:
        convs.extend(single(q, answer) for q in surface_variants(question, rng, 2))
    convs.extend(arithmetic_pairs(rng, 45))
    return convs


def arithmetic_pairs(rng: random.Random, per_language: int) -> list[Conversation]:
    """Small arithmetic questions with correct answers in both languages."""
    convs: list[Conversation] = []
    seen: set[str] = set()
    for zh in (False, True):
        made = 0
        while made < per_language:
            op = rng.choice("+-*")
            a, b = (rng.randint(2, 12), rng.randint(2, 12)) if op == "*" else (rng.randint(1, 99), rng.randint(1, 99))
            if op == "-" and b > a:
                a, b = b, a
            c = a + b if op == "+" else a - b if op == "-" else a * b
            questions = ARITH_ZH_QUESTIONS if zh else ARITH_EN_QUESTIONS
            question = rng.choice(questions[op]).format(a=a, b=b)
            if question in seen:
                continue
            seen.add(question)
            answer = (ARITH_ZH_ANSWER if zh else ARITH_EN_ANSWER)[op].format(a=a, b=b, c=c)
            convs.append(single(question, answer))
            made += 1
    return convs


def multi_turn_pairs(persona: Persona, rng: random.Random, count: int) -> list[Conversation]:
    """Two-turn chats: a greeting followed by an identity question, in one language."""
    convs = []
    for i in range(count):
        zh = i % 2 == 1
        greet_q, greet_a = rng.choice(CHAT_ZH[:5] if zh else CHAT_EN[:6])
        templates = [t for t in (IDENTITY_TRAIN_ZH if zh else IDENTITY_TRAIN_EN) if keep_template(t[0], persona)]
        category, question = rng.choice(templates)
        answer = identity_answer(category, zh, persona, rng.randrange(3))
        convs.append(single(greet_q, greet_a) + single(question, answer))
    return convs


def identity_eval(persona: Persona) -> list[Conversation]:
    """Held-out identity questions (wordings never used in training) with reference answers."""
    convs = []
    for category, question in IDENTITY_EVAL_EN + IDENTITY_EVAL_ZH:
        if keep_template(category, persona):
            convs.append(single(question, identity_answer(category, has_cjk(question), persona, 0)))
    return convs


def build_identity(persona: Persona, seed: int,
                   chitchat: bool = False) -> tuple[list[Conversation], list[Conversation]]:
    """Build the identity training and eval conversations.

    Without chitchat, the set holds only persona conversations: train_lora.py replays the base's own general
    chat next to it (--replay_ratio), which keeps general answers better than hand-written chit-chat does."""
    rng = random.Random(seed)
    train = identity_pairs(persona, rng, 7) + (chat_pairs(rng) if chitchat else []) + multi_turn_pairs(persona, rng, 40)
    train = dedupe_single_turn(train)
    rng.shuffle(train)
    evals = identity_eval(persona)
    if len(evals) < MIN_IDENTITY_EVAL:
        raise ValueError(f"only {len(evals)} identity eval questions left for this persona")
    return train, evals


def dedupe_single_turn(convs: list[Conversation]) -> list[Conversation]:
    """Keep the first single-turn conversation for each exact question string; multi-turn ones are kept."""
    seen: set[str] = set()
    kept = []
    for conv in convs:
        if len(conv) == 2:
            if conv[0]["content"] in seen:
                continue
            seen.add(conv[0]["content"])
        kept.append(conv)
    return kept


# --------------------------------------------------------------------------------------------------------------------
# Medical builder
# --------------------------------------------------------------------------------------------------------------------


def close_kind(cond: Condition, field: str) -> str:
    """Pick which closing sentence family applies to a condition and field."""
    if field == "symptoms":
        return "default"
    if field == "care":
        return "chronic" if cond.chronic else "default"
    if cond.urgent:
        return "urgent"
    gp_first = field == "department" and ("GP" in cond.dept_en or "全科" in cond.dept_zh)
    return "routine_gp" if gp_first else "routine"


def medical_answer(cond: Condition, field: str, zh: bool, index: int) -> str:
    """Fill answer template number index (wrapped) for one condition, field and language."""
    pool = (MED_ANSWERS_ZH if zh else MED_ANSWERS_EN)[field]
    closes = (MED_CLOSE_ZH if zh else MED_CLOSE_EN)[(field, close_kind(cond, field))]
    note = cond.note_zh if zh else cond.note_en
    close = note if field == "symptoms" and note else closes[index % len(closes)]
    dept = cond.dept_zh if zh else cond.dept_en
    items = medical_items(cond, field, zh)
    text = pool[index % len(pool)].format(name=cond.zh if zh else cond.en, items=items, close=close,
                                          dept=dept, dept_cap=cap(dept))
    return text.strip()


def medical_items(cond: Condition, field: str, zh: bool) -> str:
    """Render the list of table entries used by a field."""
    if field == "department":
        return ""
    if zh:
        values = {"symptoms": cond.sym_zh, "care": cond.care_zh, "warning": cond.warn_zh}[field]
        if field == "care":
            return ("；" if any("，" in v for v in values) else "，").join(values)
        return join_zh(values, "或" if field == "warning" else "和")
    values = {"symptoms": cond.sym_en, "care": cond.care_en, "warning": cond.warn_en}[field]
    return join_en(values, "or" if field == "warning" else "and")


def medical_questions(cond: Condition, field: str, zh: bool, split: str) -> list[str]:
    """Fill the train or eval question templates of one field for a condition."""
    table = MED_QUESTIONS_ZH if zh else MED_QUESTIONS_EN
    name = cond.zh if zh else cond.en
    does = "do" if cond.plural and not zh else "does"
    return [cap(t.format(name=name, does=does)) for t in table[field][split]]


def medical_train(rng: random.Random) -> list[Conversation]:
    """Training Q&A: every condition x field x language x training template, some with an extra surface form."""
    convs = []
    for cond in CONDITIONS:
        for field in FIELDS:
            for zh in (True, False):
                for question in medical_questions(cond, field, zh, "train"):
                    extra = 2 if rng.random() < 0.35 else 1
                    for form in surface_variants(question, rng, extra, medical=True):
                        convs.append(single(form, medical_answer(cond, field, zh, rng.randrange(2))))
    return convs + medical_safety(rng)


def medical_safety(rng: random.Random) -> list[Conversation]:
    """Safety Q&A: not a doctor, no diagnosis, no dosages, and emergencies that need a call for help."""
    convs = []
    for zh_qs, zh_a, en_qs, en_a in MED_SAFETY:
        for question in zh_qs:
            convs.extend(single(q, zh_a) for q in surface_variants(question, rng, 3, medical=True))
        for question in en_qs:
            convs.extend(single(q, en_a) for q in surface_variants(question, rng, 3, medical=True))
    return convs


def medical_eval() -> list[Conversation]:
    """Held-out Q&A: one eval-only wording per condition, field and language, with the reference answer."""
    convs = []
    for i, cond in enumerate(CONDITIONS):
        for j, field in enumerate(FIELDS):
            for zh in (True, False):
                options = medical_questions(cond, field, zh, "eval")
                question = options[(i + j) % len(options)]
                convs.append(single(question, medical_answer(cond, field, zh, 0)))
    return convs


def build_medical(seed: int) -> tuple[list[Conversation], list[Conversation]]:
    """Build the medical training and eval conversations."""
    rng = random.Random(seed)
    train = dedupe_single_turn(medical_train(rng))
    rng.shuffle(train)
    return train, medical_eval()


# --------------------------------------------------------------------------------------------------------------------
# Checks, writing and reporting
# --------------------------------------------------------------------------------------------------------------------


def check_disjoint(train: list[Conversation], evals: list[Conversation]) -> None:
    """Raise ValueError if any eval question equals a training question after normalisation (kept under -O)."""
    seen = {normalise_question(q) for q in user_turns(train)}
    eval_norm = [normalise_question(q) for q in user_turns(evals)]
    clashes = sorted({q for q in eval_norm if q in seen})
    if clashes:
        raise ValueError(f"eval questions also appear in training: {clashes[:5]}")
    if len(set(eval_norm)) != len(eval_norm):
        raise ValueError("the eval set repeats a question")


def check_conversation(conv: object) -> str | None:
    """Return a problem description for one conversation, or None when it is well formed."""
    if not isinstance(conv, list) or not conv:
        return "conversations must be a non-empty list"
    msgs = conv[1:] if isinstance(conv[0], dict) and conv[0].get("role") == "system" else conv
    if not msgs or len(msgs) % 2:
        return "user/assistant turns must come in pairs"
    for i, msg in enumerate(msgs):
        if not isinstance(msg, dict) or set(msg) != {"role", "content"}:
            return "each turn needs exactly role and content"
        if msg["role"] != ("user" if i % 2 == 0 else "assistant"):
            return "roles must alternate user/assistant and end with assistant"
        content = msg["content"]
        if not isinstance(content, str) or not content.strip() or content != content.strip():
            return "content must be a non-empty string without outer whitespace"
        if msg["role"] == "assistant" and not short_enough(content):
            return f"assistant reply too long: {content[:40]}"
    return None


def short_enough(text: str) -> bool:
    """Reply length limit: at most MAX_ZH_CHARS characters in Chinese or MAX_EN_WORDS words in English."""
    return len(text) <= MAX_ZH_CHARS if has_cjk(text) else len(text.split()) <= MAX_EN_WORDS


def load_checked(path: Path) -> list[Conversation]:
    """Read a JSONL file, checking every line; return its conversations or raise ValueError on the first problem."""
    if not path.is_file():
        raise ValueError(f"{path} does not exist; build it with: python dataset/build_lora_data.py all")
    convs = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg}); rebuild the file") from err
            if not isinstance(record, dict) or "conversations" not in record:
                raise ValueError(f"{path}:{lineno}: missing 'conversations'")
            problem = check_conversation(record["conversations"])
            if problem:
                raise ValueError(f"{path}:{lineno}: {problem}")
            convs.append(record["conversations"])
    return convs


def write_jsonl(path: Path, convs: list[Conversation]) -> None:
    """Write conversations as UTF-8 JSONL with Unix newlines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"conversations": conv}, ensure_ascii=False) + "\n" for conv in convs]
    path.write_text("".join(lines), encoding="utf-8", newline="\n")


def display_path(path: Path) -> str:
    """Show a path relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def describe(path: Path, convs: list[Conversation]) -> str:
    """One summary line: path, conversations, zh/en split, multi-turn count and size."""
    zh = sum(has_cjk(conv[0]["content"]) for conv in convs)
    multi = sum(len(conv) > 2 for conv in convs)
    size = path.stat().st_size / 1024
    counts = f"{len(convs)} conversations (zh {zh}, en {len(convs) - zh}, multi-turn {multi})"
    return f"{display_path(path)}: {counts}, {size:.1f} KB"


def save_pair(train: list[Conversation], evals: list[Conversation], out: Path, eval_out: Path) -> None:
    """Check, write, re-validate and report a training file and its held-out eval file."""
    check_disjoint(train, evals)
    for path, convs in ((out, train), (eval_out, evals)):
        write_jsonl(path, convs)
        if load_checked(path) != convs:
            raise ValueError(f"{path} does not read back as written")
        print(describe(path, convs))


def default_eval_path(out: Path) -> Path:
    """Eval file next to the training file: name.jsonl -> name_eval.jsonl."""
    return out.with_name(out.stem + "_eval" + out.suffix)


# --------------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------------


def run_identity(args: argparse.Namespace) -> None:
    """Handle the 'identity' sub-command."""
    persona = Persona(args.name, args.maker, args.name_zh or args.name, args.maker_zh or args.maker)
    out = Path(args.out)
    train, evals = build_identity(persona, args.seed, args.with_chitchat)
    save_pair(train, evals, out, Path(args.eval_out) if args.eval_out else default_eval_path(out))


def run_medical(args: argparse.Namespace) -> None:
    """Handle the 'medical' sub-command."""
    out = Path(args.out)
    train, evals = build_medical(args.seed)
    save_pair(train, evals, out, Path(args.eval_out) if args.eval_out else default_eval_path(out))


def run_all(args: argparse.Namespace) -> None:
    """Handle the 'all' sub-command: both data sets with default names and paths."""
    persona = Persona(DEFAULT_NAME, DEFAULT_MAKER, DEFAULT_NAME, DEFAULT_MAKER)
    out_dir = Path(args.out_dir)
    train, evals = build_identity(persona, args.seed)
    save_pair(train, evals, out_dir / "lora_identity.jsonl", out_dir / "lora_identity_eval.jsonl")
    train, evals = build_medical(args.seed)
    save_pair(train, evals, out_dir / "lora_medical.jsonl", out_dir / "lora_medical_eval.jsonl")


def run_validate(args: argparse.Namespace) -> None:
    """Handle the 'validate' sub-command: structural checks plus train/eval disjointness for known pairs."""
    paths = [Path(p) for p in args.files] or [DATA_DIR / f"lora_{n}.jsonl" for n in
                                              ("identity", "identity_eval", "medical", "medical_eval")]
    loaded = {}
    for path in paths:
        loaded[path] = load_checked(path)
        print(describe(path, loaded[path]))
    for path, convs in loaded.items():
        eval_path = default_eval_path(path)
        if eval_path in loaded:
            check_disjoint(convs, loaded[eval_path])
            print(f"{eval_path.name} is disjoint from {path.name}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description="Build the LoRA demo data sets (identity persona, health Q&A).")
    sub = parser.add_subparsers(dest="command", required=True)

    ident = sub.add_parser("identity", help="persona identity set plus held-out eval questions")
    ident.add_argument("--name", default=DEFAULT_NAME, help="assistant name used in English answers")
    ident.add_argument("--maker", default=DEFAULT_MAKER, help="organisation that made the assistant")
    ident.add_argument("--name_zh", default="", help="name used in Chinese answers (default: --name)")
    ident.add_argument("--maker_zh", default="", help="maker used in Chinese answers (default: --maker)")
    ident.add_argument("--out", default=str(DATA_DIR / "lora_identity.jsonl"), help="training JSONL path")
    ident.add_argument("--eval_out", default="", help="eval JSONL path (default: <out stem>_eval.jsonl)")
    ident.add_argument("--with_chitchat", action="store_true",
                       help="also add ordinary chit-chat (off by default: train_lora.py replays general chat)")
    ident.set_defaults(func=run_identity)

    med = sub.add_parser("medical", help="general health Q&A set plus held-out eval questions")
    med.add_argument("--out", default=str(DATA_DIR / "lora_medical.jsonl"), help="training JSONL path")
    med.add_argument("--eval_out", default="", help="eval JSONL path (default: <out stem>_eval.jsonl)")
    med.set_defaults(func=run_medical)

    every = sub.add_parser("all", help="build all four files with default settings")
    every.add_argument("--out_dir", default=str(DATA_DIR), help="folder for the four JSONL files")
    every.set_defaults(func=run_all)

    check = sub.add_parser("validate", help="check existing files (default: the four LoRA files)")
    check.add_argument("files", nargs="*", help="JSONL files to check")
    check.set_defaults(func=run_validate)

    for command in (ident, med, every):
        command.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (output is deterministic)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    for name in ("name", "maker"):
        if not getattr(args, name, "x").strip():
            print(f"--{name} must not be empty", file=sys.stderr)
            return 2
    try:
        args.func(args)
    except (ValueError, AssertionError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
