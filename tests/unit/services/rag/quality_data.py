"""A small labelled retrieval set, written for HearthNet (public domain, CC0): 40
emergency-preparedness passages in 4 Markdown documents, one `##` section each (so one
passage is one chunk), and 24 questions phrased apart from their passage's wording,
each labelled with the section that answers it."""
from __future__ import annotations

DOCUMENTS: dict[str, dict[str, str]] = {
    "Water and food": {
        "Storing drinking water": "Keep at least four litres of drinking water per person per day, for a minimum of three days. Use food-grade containers, label them with the date, and replace the water every six months. Store the containers in a cool, dark place away from fuel and chemicals.",
        "Boiling water": "If the tap water may be contaminated, bring it to a rolling boil and keep it boiling for one full minute. Above two thousand metres of altitude, boil it for three minutes. Let it cool without adding ice, and store it in clean covered containers.",
        "Disinfecting water with bleach": "Plain unscented household bleach can disinfect clear water when boiling is impossible. Add eight drops of regular bleach to four litres of water, stir, and wait thirty minutes. The water should have a slight chlorine smell; if not, repeat the dose and wait fifteen more minutes.",
        "Filtering cloudy water": "Cloudy water should first be left to settle, then poured through a clean cloth, a coffee filter or a paper towel. Filtering removes sediment but does not kill germs, so disinfect the water afterwards by boiling it or with bleach.",
        "Emergency food supply": "Keep a supply of food that needs no refrigeration and little or no cooking for at least three days: canned vegetables, beans, fish, dried fruit, nuts, crackers and peanut butter. Remember a manual can opener and food for babies, pets and people on special diets.",
        "Food in a power cut": "During a power cut keep the fridge and freezer doors closed. A closed fridge keeps food cold for about four hours; a full freezer holds its temperature for about forty-eight hours, a half-full one for twenty-four. Throw away perishable food that has been above five degrees for more than two hours.",
        "Cooking without electricity": "Never use a charcoal grill, camping stove or generator indoors or in a garage: they produce carbon monoxide. Cook outdoors, at least three metres from doors and windows, and keep a fire extinguisher or a bucket of sand nearby.",
        "Rationing water": "If supplies run low, drink the water you need and ration everything else. Do not ration drinking water below one litre a day per adult; thirst and heat make dehydration dangerous within a day. Reduce activity and stay in the shade to need less.",
        "Hidden water sources in the home": "In an emergency you can use the water in the hot water tank, in the pipes and the ice cubes in the freezer. Turn off the main valve first so the house water is not contaminated by the mains, then open the lowest tap to drain the pipes.",
        "Water for hygiene": "Washing hands prevents most diarrhoeal illness after a disaster. Use soap and clean water for twenty seconds, or an alcohol-based gel with at least sixty percent alcohol when water is short. Keep separate water for washing and for drinking.",
    },
    "Shelter and evacuation": {
        "Community shelter location": "The community shelter is the gymnasium of the primary school on Lindenweg. It has camp beds, a generator, a first aid room and a kitchen. Volunteers open it whenever the siren sounds or the mayor announces an evacuation.",
        "What to bring to a shelter": "Bring a grab bag to the shelter: medication for a week, copies of identity papers, phone charger, warm clothes, a blanket or sleeping bag, toiletries, glasses, and some cash. Shelters cannot accept weapons or alcohol.",
        "Pets in the shelter": "Pets are welcome in the separate animal area behind the gymnasium. Bring a carrier or leash, food for three days, vaccination papers and a photo of the animal in case you are separated.",
        "Evacuation routes": "The evacuation route for the lower town runs north along the dyke road to the industrial estate, then east to the school. Do not drive through water on the road: thirty centimetres of moving water can float a car.",
        "Siren signals": "A one-minute rising and falling siren tone means take shelter and listen to the radio. A continuous one-minute tone means the danger is over. The siren is tested every first Saturday of the month at noon.",
        "Sheltering in place": "If you are told to shelter in place, go inside, close all windows and doors, turn off ventilation and air conditioning, and move to an inner room. Listen to the radio and do not leave until the all-clear is announced.",
        "Leaving your home safely": "Before you evacuate, switch off the electricity at the main fuse box and close the gas valve if you are told to. Lock the doors, take your grab bag, and tell a neighbour where you are going. Leave a note saying when you left.",
        "People who need help evacuating": "Neighbours who cannot walk far, have no car, or depend on medical equipment should register with the street warden. Wardens keep a list and organise transport with the fire brigade before an evacuation order.",
        "Staying warm without heating": "In a cold power cut, gather everyone in one room, close the curtains and block draughts under doors. Wear layers and a hat, and use sleeping bags. Do not use an oven or gas hob to heat a room.",
        "Returning home after a flood": "Do not return home until the authorities say it is safe. Wear boots and gloves, check for structural damage, and do not switch on electricity until an electrician has checked the wiring. Photograph the damage for insurance before you clean.",
    },
    "Health and first aid": {
        "Stopping heavy bleeding": "To stop heavy bleeding, press firmly on the wound with a clean cloth and keep pressing. If blood soaks through, add more cloth on top without removing the first layer. Raise the injured limb and call for help.",
        "Treating burns": "Cool a burn under cool running water for at least twenty minutes, remove rings and tight clothing nearby, then cover it loosely with cling film or a clean plastic bag. Do not use ice, butter or creams. Seek help for burns larger than the hand.",
        "Hypothermia signs": "Shivering, confusion, slurred speech and clumsy hands are signs of hypothermia. Move the person somewhere warm, replace wet clothes with dry ones, and warm the body centre first with blankets. Give warm sweet drinks only if they are fully awake.",
        "Carbon monoxide poisoning": "Headache, dizziness, nausea and tiredness that improve outside the house can mean carbon monoxide poisoning. Get everyone into fresh air at once, do not go back in, and call the emergency number. A battery carbon monoxide alarm gives early warning.",
        "Medication during an outage": "Keep at least a week of regular medicines and a written list of doses. Insulin can be kept unrefrigerated for up to four weeks below twenty-five degrees. Ask your pharmacist which of your medicines need cold storage.",
        "Recovery position": "If someone is unconscious but breathing, put them in the recovery position: on their side, the upper leg bent, the head tilted back so the airway stays open. Check their breathing every minute until help arrives.",
        "CPR basics": "If an adult is not breathing normally, call for help and start chest compressions: push hard and fast in the centre of the chest, about one hundred to one hundred and twenty times a minute, five to six centimetres deep. Use a defibrillator as soon as one arrives.",
        "Heat stroke": "Hot dry skin, a temperature above forty degrees, confusion and no sweating are signs of heat stroke. Cool the person immediately with water and fanning, place cold packs in the armpits and groin, and get medical help.",
        "First aid kit contents": "A household first aid kit should contain sterile dressings, bandages, plasters, tape, scissors, tweezers, disposable gloves, a thermometer, pain relievers, antiseptic wipes, an emergency blanket and a first aid guide.",
        "Mental health after a disaster": "After a disaster it is normal to feel anxious, sleep badly or feel numb. Keep routines, talk with others, limit the news you watch, and look after children by answering their questions simply. Ask for help if the feelings last for weeks.",
    },
    "Power and communication": {
        "Emergency radio frequency": "The local emergency broadcaster transmits on 87.9 MHz. Keep a battery or crank radio at home and tune to this frequency for announcements from the fire brigade and the town hall during an outage.",
        "Charging phones without mains": "Charge phones from a car while the engine runs outdoors, from a power bank, or from a small solar panel. Switch phones to low power mode, turn off mobile data when not needed, and keep calls short.",
        "Using a generator safely": "Run a portable generator only outdoors, at least six metres from windows and doors, and never in the rain without a cover. Plug appliances directly into the generator; never connect it to the house wiring without a transfer switch.",
        "Text messages in emergencies": "When mobile networks are overloaded, text messages often get through when calls do not. Agree on one relative outside the area whom everyone in the family texts to say they are safe.",
        "Community mesh network": "The neighbourhood mesh network keeps working when the internet is down: each household node talks to its neighbours over local Wi-Fi. Messages and documents spread node to node, so the flood plan can be read even without a connection to the outside world.",
        "Candles and lighting": "Use battery torches and lanterns rather than candles; candles cause many house fires during power cuts. If you must use candles, put them in sturdy holders away from curtains and never leave them burning unattended.",
        "Fuel storage": "Store petrol only in approved containers, in a ventilated shed away from the house, and no more than twenty litres. Petrol goes stale after about three months unless a stabiliser is added.",
        "Reporting outages": "Report a power outage to the grid operator by phone or via the community board, giving your street and house number. Report fallen power lines immediately and stay at least ten metres away from them.",
        "Batteries to keep": "Keep spare batteries for the torch, the radio and the carbon monoxide alarm. Check their dates twice a year, when the clocks change, and store them in their packaging in a dry place at room temperature.",
        "Meeting point for families": "Every family should agree on two meeting points: one just outside the home in case of fire, and one outside the neighbourhood, such as the church square, in case you cannot get home.",
    },
}

# (question, the section that answers it)
QUESTIONS: list[tuple[str, str]] = [
    ("How long do I need to boil tap water to make it safe?", "Boiling water"),
    ("How many drops of chlorine bleach do I put in the water?", "Disinfecting water with bleach"),
    ("How much water should we keep stored for each person?", "Storing drinking water"),
    ("Where is the emergency shelter in our town?", "Community shelter location"),
    ("Can I take my dog with me to the shelter?", "Pets in the shelter"),
    ("Which road should we take to leave the lower town?", "Evacuation routes"),
    ("What does a continuous siren tone mean?", "Siren signals"),
    ("How long will the freezer keep food frozen without power?", "Food in a power cut"),
    ("Is it safe to use a barbecue inside the house?", "Cooking without electricity"),
    ("Someone is bleeding a lot from a cut, what do I do?", "Stopping heavy bleeding"),
    ("How should I cool down a burn on my arm?", "Treating burns"),
    ("My grandmother is confused and shivering from the cold, how do I help her?", "Hypothermia signs"),
    ("Does insulin need to stay in the fridge?", "Medication during an outage"),
    ("Which radio station gives emergency announcements?", "Emergency radio frequency"),
    ("How do I keep my mobile phone charged without electricity?", "Charging phones without mains"),
    ("Where should the generator be placed?", "Using a generator safely"),
    ("The phone network is jammed, how do we tell family we are okay?", "Text messages in emergencies"),
    ("Can we read documents when the internet is down?", "Community mesh network"),
    ("What should be in a home first aid kit?", "First aid kit contents"),
    ("Everybody has headaches and feels sick at home, could it be the heater?", "Carbon monoxide poisoning"),
    ("What do I pack in my bag when I go to the shelter?", "What to bring to a shelter"),
    ("Where can I find water in the house when the taps are dry?", "Hidden water sources in the home"),
    ("My elderly neighbour has no car, who will help her leave?", "People who need help evacuating"),
    ("When is it safe to turn the electricity back on after the flood?", "Returning home after a flood"),
]


def markdown(title: str, sections: dict[str, str]) -> str:
    parts = [f"# {title}\n"]
    for heading, text in sections.items():
        parts.append(f"## {heading}\n\n{text}\n")
    return "\n".join(parts)
