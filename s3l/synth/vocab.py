"""Word lists for the synthetic-corpus grammar (written for s3l).

Nouns are grouped by meaning so that the grammar can pick verbs and adjectives that fit them: people eat food
and read texts, animals run and hide, places are visited. A noun is ``singular`` or ``singular/plural`` when its
plural is irregular (``child/children``); regular plurals are formed by :func:`s3l.synth.grammar.plural`.
A verb is ``base`` or ``base/past/participle[/ing]`` when any form is irregular (``run/ran/run/running``), or
``base/past`` when the final consonant doubles (``stop/stopped`` gives ``stopping``).
"""

from __future__ import annotations


def words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


PEOPLE = words("""
teacher doctor farmer baker nurse driver pilot painter singer writer lawyer student artist engineer builder
gardener dancer player worker visitor neighbour stranger soldier sailor fisherman/fishermen policeman/policemen
postman/postmen waiter waitress cook chef manager clerk librarian scientist professor musician actor actress
farmer butcher tailor carpenter plumber mechanic dentist judge captain guard guide tourist traveller customer
child/children boy girl man/men woman/women baby friend cousin uncle aunt brother sister mother father
grandmother grandfather son daughter husband wife/wives king queen prince princess doctor officer reporter
photographer director secretary banker hunter shepherd miner porter barber jeweller poet
""")

JOBS = words("""
teacher doctor farmer baker nurse driver pilot painter singer writer lawyer student artist engineer builder
gardener dancer cook chef manager clerk librarian scientist musician actor carpenter plumber mechanic dentist
judge reporter photographer banker poet
""")

ANIMALS = words("""
dog cat horse cow pig sheep/sheep goat chicken duck goose/geese rabbit mouse/mice rat fox wolf/wolves bear lion
tiger elephant monkey donkey deer/deer frog snake bird owl eagle parrot pigeon swan fish/fish whale dolphin
turtle bee spider butterfly squirrel camel zebra giraffe kitten puppy lamb calf/calves hen
""")

OBJECTS = words("""
book key bag box bottle cup plate bowl glass/glasses spoon fork knife/knives chair table lamp clock watch phone
camera radio basket bucket hammer ladder rope umbrella coat hat shirt shoe sock glove scarf jacket dress
blanket pillow towel mirror picture painting candle ball kite doll toy drum guitar piano violin bicycle wallet
ring necklace pencil pen brush comb ticket coin stamp envelope parcel suitcase map flag tent computer screen
window door gate fence wheel engine battery bell whistle needle button bench shelf/shelves drawer cupboard
jar pot pan kettle oven stove fridge broom shovel axe saw nail screw tool statue vase carpet curtain television
treasure
""")

TEXTS = words("""
letter note message report story poem newspaper magazine recipe list menu diary postcard card book novel
article essay invitation contract receipt song speech lesson question answer
""")

FOOD_COUNT = words("""
apple orange banana pear peach plum lemon potato/potatoes tomato/tomatoes onion carrot egg cake pie biscuit
sandwich cookie sausage pancake strawberry cherry melon grape pizza burger carrot cucumber pumpkin
""")

FOOD_MASS = words("""
bread cheese butter soup rice milk tea coffee juice water honey jam salt sugar flour pasta chicken fish meat
chocolate cream salad porridge toast
""")

PLACES = words("""
park kitchen station library market river garden school hospital church office shop bank hotel museum bridge
beach forest island mountain village city/cities farm field lake harbour airport street road square castle
theatre cinema restaurant cafe bakery factory prison palace tower cottage barn stable yard hall room bedroom
bathroom cellar attic classroom playground stadium zoo valley hill desert cave garage
""")

VEHICLES = words("car bus train boat ship plane taxi truck van tram ferry tractor")

EVENTS = words("""
meeting party game concert lesson match wedding holiday journey trip race festival dinner lunch breakfast
interview show exam film movie storm flood fire accident
""")

NAMES = words("""
anna maria john peter paul mary james david sarah emma oliver jack harry george thomas william lucy sophie
alice grace ella emily charlotte daniel samuel henry edward robert richard michael simon martin laura helen
kate rachel rebecca hannah julia jane susan linda karen nancy betty frank walter arthur albert ben sam tom
tim max leo oscar alex chris nick mark luke adam ryan kevin brian steven victor hugo carlos pedro marco
elena sofia nina olga ivan igor amir omar fatima aisha yusuf ravi priya chen wei mei lin kenji yuki
""")

CITIES = words("""
london paris berlin rome madrid vienna dublin lisbon athens prague warsaw moscow cairo tokyo delhi sydney
toronto chicago boston dallas denver seattle miami houston brazil canada mexico china india japan france
spain italy germany egypt kenya scotland ireland wales
""")

COLOURS = words("red blue green yellow black white brown grey pink purple orange golden silver")

THING_ADJ = words("""
old new big small large little heavy light long short wide narrow tall round square flat sharp soft hard
broken empty full clean dirty cheap expensive strange beautiful ugly heavy shiny dusty wooden plastic
metal leather cold warm wet dry famous useful ordinary simple fancy precious unusual casual beige
""")

PERSON_ADJ = words("""
happy sad angry tired hungry thirsty young old clever kind brave calm quiet loud busy lazy polite rude
friendly honest patient nervous proud lucky lonely famous rich poor strong weak careful curious cheerful
gentle generous serious shy sleepy worried excited surprised
""")

FOOD_ADJ = words("fresh warm hot cold sweet sour bitter salty spicy delicious tasty dry soft stale")

PLACE_ADJ = words("""
quiet busy crowded empty dark bright small large old new famous beautiful noisy peaceful lovely cold warm
sunny windy muddy clean dirty
""")

ADVERBS = words("""
quickly slowly carefully quietly loudly happily sadly suddenly finally early late often always never
sometimes usually rarely really almost nearly gently badly well easily politely angrily patiently proudly
""")

TIME_ADVERBIALS = (
    "yesterday", "today", "tomorrow", "last night", "this morning", "this evening", "last week", "next week",
    "last year", "next month", "every day", "every morning", "on monday", "on tuesday", "on wednesday",
    "on thursday", "on friday", "on saturday", "on sunday", "in the morning", "in the afternoon",
    "in the evening", "at night", "at noon", "at midnight", "in january", "in february", "in march", "in april",
    "in may", "in june", "in july", "in august", "in september", "in october", "in november", "in december",
    "in the spring", "in the summer", "in the autumn", "in the winter", "after dinner", "before breakfast",
    "at the weekend", "later", "soon", "now", "again", "once", "twice", "an hour ago", "two days ago",
)  # fmt: skip

LOCATIVE_PREPS = words("in on under near behind beside inside outside above below by")
MOTION_PREPS = ("into", "across", "along", "through", "over", "past", "towards", "around", "out of", "up", "down")

# ---------------------------------------------------------------------------------------------------- verbs

# person does it to an object
V_OBJECT = words("""
buy/bought/bought sell/sold/sold find/found/found lose/lost/lost carry open close bring/brought/brought
take/took/taken fix break/broke/broken clean paint wash hold/held/held drop/dropped hide/hid/hidden
keep/kept/kept borrow need want like move pack check choose/chose/chosen wrap/wrapped fill lift push pull
throw/threw/thrown catch/caught/caught repair replace return steal/stole/stolen carry polish touch mend
deliver collect share use drag/dragged fold lock unlock weigh measure order forget/forgot/forgotten/forgetting
""")

V_TEXT = words("""
read/read/read write/wrote/written send/sent/sent print sign finish translate copy/copied check sell/sold/sold
post/posted answer review publish burn tear/tore/torn lose/lost/lost find/found/found
""")

V_FOOD = words("""
eat/ate/eaten cook bake taste cut/cut/cut/cutting share order serve prepare slice buy/bought/bought
finish drink/drank/drunk warm boil fry/fried heat peel spill/spilled chop/chopped
""")

V_PERSON = words("""
meet/met/met call help visit thank invite ask follow remember forget/forgot/forgotten/forgetting trust warn
teach/taught/taught pay/paid/paid join greet miss hug/hugged interview recognise tell/told/told find/found/found
phone drive/drove/driven wake/woke/woken kiss email chase surprise hire/hired marry/married blame praise
answer comfort""")

V_ANIMAL = words("""
feed/fed/fed chase wash train find/found/found follow photograph catch/caught/caught see/saw/seen hear/heard/heard
watch brush carry walk pet/petted frighten rescue
""")

V_PLACE = words("""
visit leave/left/left reach clean paint explore enter search decorate photograph sweep/swept/swept guard
close open lock leave/left/left describe
""")

V_INTRANS = words("""
laugh smile sleep/slept/slept wait arrive sing/sang/sung dance cry/cried shout work rest win/won/won/winning
agree complain listen hurry/hurried travel study/studied relax whisper sneeze cough fall/fell/fallen stay
sit/sat/sat/sitting stand/stood/stood jump play worry/worried pray yawn nod/nodded wave
""")

V_MOTION = words("""
go/went/gone walk drive/drove/driven run/ran/run/running hurry/hurried return travel swim/swam/swum/swimming
fly/flew/flown ride/rode/ridden climb move come/came/come cycle sail march wander rush
""")

V_ANIMAL_INTRANS = words("""
run/ran/run/running jump sleep/slept/slept hide/hid/hidden play swim/swam/swum/swimming wait eat/ate/eaten
sit/sat/sat/sitting hunt bark growl climb""")

V_CLAUSE = words("""
say/said/said think/thought/thought know/knew/known hope believe remember forget/forgot/forgotten/forgetting
notice hear/heard/heard feel/felt/felt explain promise realise suspect decide discover/discovered dream/dreamt/dreamt
""")

V_PERCEPT = words("see/saw/seen hear/heard/heard watch notice")
