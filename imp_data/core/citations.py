"""BibTeX for Imp and for every dataset a recipe can read (keyed by the card's SOURCES), for dataset cards."""

IMP_CITATION = r"""@article{shao2024imp,
  title   = {Imp: Highly Capable Large Multimodal Models for Mobile Devices},
  author  = {Shao, Zhenwei and Yu, Zhou and Yu, Jun and Ouyang, Xuecheng and Zheng, Lihao and Gai, Zhenbiao
             and Wang, Mingyang and Ding, Jiajun},
  journal = {arXiv preprint arXiv:2405.12107},
  year    = {2024}
}"""

CITATIONS = {
    "liu2024improved": r"""@inproceedings{liu2024improved,
  title     = {Improved Baselines with Visual Instruction Tuning},
  author    = {Liu, Haotian and Li, Chunyuan and Li, Yuheng and Lee, Yong Jae},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {26296--26306},
  year      = {2024}
}""",
    "liu2023visual": r"""@inproceedings{liu2023visual,
  title     = {Visual Instruction Tuning},
  author    = {Liu, Haotian and Li, Chunyuan and Wu, Qingyang and Lee, Yong Jae},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  volume    = {36},
  year      = {2023}
}""",
    "kafle2018dvqa": r"""@inproceedings{kafle2018dvqa,
  title     = {{DVQA}: Understanding Data Visualizations via Question Answering},
  author    = {Kafle, Kushal and Price, Brian and Cohen, Scott and Kanan, Christopher},
  booktitle = {Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {5648--5656},
  year      = {2018}
}""",
    "masry2022chartqa": r"""@inproceedings{masry2022chartqa,
  title     = {{ChartQA}: A Benchmark for Question Answering about Charts with Visual and Logical Reasoning},
  author    = {Masry, Ahmed and Long, Do Xuan and Tan, Jia Qing and Joty, Shafiq and Hoque, Enamul},
  booktitle = {Findings of the Association for Computational Linguistics: ACL 2022},
  pages     = {2263--2279},
  year      = {2022}
}""",
    "mathew2021docvqa": r"""@inproceedings{mathew2021docvqa,
  title     = {{DocVQA}: A Dataset for {VQA} on Document Images},
  author    = {Mathew, Minesh and Karatzas, Dimosthenis and Jawahar, C. V.},
  booktitle = {Proceedings of the IEEE/CVF Winter Conference on Applications of Computer Vision (WACV)},
  pages     = {2200--2209},
  year      = {2021}
}""",
    "kembhavi2016diagram": r"""@inproceedings{kembhavi2016diagram,
  title     = {A Diagram Is Worth a Dozen Images},
  author    = {Kembhavi, Aniruddha and Salvato, Mike and Kolve, Eric and Seo, Minjoon and Hajishirzi, Hannaneh
               and Farhadi, Ali},
  booktitle = {European Conference on Computer Vision (ECCV)},
  pages     = {235--251},
  year      = {2016}
}""",
    "mathew2022infographicvqa": r"""@inproceedings{mathew2022infographicvqa,
  title     = {{InfographicVQA}},
  author    = {Mathew, Minesh and Bagal, Viraj and Tito, Rub{\`e}n and Karatzas, Dimosthenis and Valveny, Ernest
               and Jawahar, C. V.},
  booktitle = {Proceedings of the IEEE/CVF Winter Conference on Applications of Computer Vision (WACV)},
  pages     = {1697--1706},
  year      = {2022}
}""",
    "chen2023sharegpt4v": r"""@article{chen2023sharegpt4v,
  title   = {{ShareGPT4V}: Improving Large Multi-Modal Models with Better Captions},
  author  = {Chen, Lin and Li, Jinsong and Dong, Xiaoyi and Zhang, Pan and He, Conghui and Wang, Jiaqi
             and Zhao, Feng and Lin, Dahua},
  journal = {arXiv preprint arXiv:2311.12793},
  year    = {2023}
}""",
    "laion2023gpt4v": r"""@misc{laion2023gpt4v,
  title        = {{GPT-4V} Dataset},
  author       = {{LAION}},
  howpublished = {Hugging Face dataset card, \url{https://huggingface.co/datasets/laion/gpt4v-dataset}},
  year         = {2023}
}""",
    "chen2024allava": r"""@article{chen2024allava,
  title   = {{ALLaVA}: Harnessing {GPT4V}-Synthesized Data for Lite Vision-Language Models},
  author  = {Chen, Guiming Hardy and Chen, Shunian and Zhang, Ruifei and Chen, Junying and Wu, Xiangbo
             and Zhang, Zhiyi and Chen, Zhihong and Li, Jianquan and Wan, Xiang and Wang, Benyou},
  journal = {arXiv preprint arXiv:2402.11684},
  year    = {2024}
}""",
}
